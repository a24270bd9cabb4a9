"""A local OpenStack Swift on loopback, from Debian's packages, with its S3 API: the model store of the pod.

    python -m dev.swift serve        # foreground until Ctrl-C; prints the S3 endpoint and credentials

Production reads the model binaries from Swift through its S3 API (KServe's storage initializer, boto3). This
runs the same servers (Debian's `swift-proxy`, `swift-account`, `swift-container`, `swift-object`, 2.30) on
127.0.0.1 with one replica on one device folder under `.state/swift/`, the `s3api` middleware in the proxy's
pipeline and `tempauth` holding one S3 key pair (a development secret, not a credential of anything real).
Everything (swift.conf included, through `swift_dir`) is read from `.state/swift/`; nothing in /etc is used.

`LocalSwift.upload(bucket, key, data)` puts an object through Swift's own API (the bucket is a Swift
container, the key an object name), so what the S3 API serves is what Swift stores.
"""

from __future__ import annotations

import getpass
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from deploy.seed_table import REPO_ROOT

STATE = REPO_ROOT / ".state" / "swift"
SERVERS = ("account", "container", "object")
ACCOUNT, USER, KEY = "liftwing", "models", "dev-secret-not-a-credential"
S3_ACCESS_KEY = f"{ACCOUNT}:{USER}"  # tempauth's S3 access key is "<account>:<user>", the secret its key
S3_REGION = "us-east-1"  # s3api's default location
PROXY_PIPELINE = "catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth " \
                 "copy slo dlo proxy-logging proxy-server"
START_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_conf(kind: str, port: int, folder: Path, memcached_port: int = 0) -> str:
    common = f"""[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
user = {getpass.getuser()}
swift_dir = {folder}
devices = {folder / 'devices'}
mount_check = false
log_name = {kind}-server
log_level = WARNING
"""
    if kind == "proxy":
        return common + f"""
[pipeline:main]
pipeline = {PROXY_PIPELINE}

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:tempauth]
use = egg:swift#tempauth
user_{ACCOUNT}_{USER} = {KEY} .admin

[filter:s3api]
use = egg:swift#s3api
location = {S3_REGION}

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:{memcached_port}

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
"""
    return common + f"""
[pipeline:main]
pipeline = {kind}-server

[app:{kind}-server]
use = egg:swift#{kind}
"""


SWIFT_CONF = """[swift-hash]
swift_hash_path_suffix = lift-wing-local
swift_hash_path_prefix = lift-wing-local

[storage-policy:0]
name = Policy-0
default = yes
"""


@dataclass
class LocalSwift:
    """The four Swift servers on loopback; `start()` writes the configuration and rings, then starts them."""

    folder: Path = STATE
    ports: dict[str, int] = field(default_factory=dict)
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        """The S3 (and Swift) endpoint: the proxy."""
        return f"http://127.0.0.1:{self.ports['proxy']}"

    def configure(self) -> None:
        if self.folder.exists():
            shutil.rmtree(self.folder)
        (self.folder / "devices" / "d1").mkdir(parents=True)
        (self.folder / "swift.conf").write_text(SWIFT_CONF)
        self.ports = {kind: free_port() for kind in (*SERVERS, "proxy", "memcached")}
        for kind in (*SERVERS, "proxy"):
            conf = server_conf(kind, self.ports[kind], self.folder, self.ports["memcached"])
            (self.folder / f"{kind}-server.conf").write_text(conf)
        for kind in SERVERS:  # one partition power 6 ring per server: 1 replica, 1 device
            builder = str(self.folder / f"{kind}.builder")
            for args in (["create", "6", "1", "1"], ["add", f"r1z1-127.0.0.1:{self.ports[kind]}/d1", "100"],
                         ["rebalance"]):
                subprocess.run(["swift-ring-builder", builder, *args], check=True, capture_output=True,
                               timeout=60)

    def start(self) -> LocalSwift:
        if shutil.which("swift-proxy-server") is None or shutil.which("memcached") is None:
            raise RuntimeError("Swift is not installed: run `make setup` (requirements/apt-images.txt)")
        self.configure()
        log = open(self.folder / "servers.log", "ab")  # noqa: SIM115 - open while the servers run
        # tempauth keeps its tokens in memcached (Swift's own deployments run one beside the proxy)
        commands = [["memcached", "-l", "127.0.0.1", "-p", str(self.ports["memcached"]), "-U", "0",
                     "-m", "16", "-u", getpass.getuser()]]
        # `-v`: each server logs to its output (servers.log) as well as to syslog
        commands += [[f"/usr/bin/swift-{kind}-server", str(self.folder / f"{kind}-server.conf"), "-v"]
                     for kind in (*SERVERS, "proxy")]
        for command in commands:
            self.processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                   start_new_session=True))
        try:
            self.wait_healthy()
        except RuntimeError:
            self.stop()
            raise
        return self

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[0]} exited: see {self.folder}/servers.log")
            try:
                self.token()
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        raise RuntimeError(f"Swift did not answer in {START_TIMEOUT_S} s: see {self.folder}/servers.log")

    def token(self) -> tuple[str, str]:
        """(storage URL, token) from tempauth: Swift's own API, used for uploads."""
        request = urllib.request.Request(f"{self.endpoint}/auth/v1.0",
                                         headers={"X-Auth-User": S3_ACCESS_KEY, "X-Auth-Key": KEY})
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return response.headers["X-Storage-Url"], response.headers["X-Auth-Token"]

    def _call(self, method: str, path: str, data: bytes | None = None) -> int:
        storage_url, token = self.token()
        request = urllib.request.Request(f"{storage_url}/{path}", data=data, method=method,
                                         headers={"X-Auth-Token": token})
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return response.status

    def upload(self, bucket: str, key: str, data: bytes) -> None:
        """Puts `data` at s3://bucket/key (the bucket is created when missing)."""
        self._call("PUT", bucket)
        self._call("PUT", f"{bucket}/{key}", data)

    def delete(self, bucket: str, key: str) -> None:
        self._call("DELETE", f"{bucket}/{key}")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.processes.clear()


def s3_settings(swift: LocalSwift, endpoint: str | None = None) -> dict[str, str]:
    """The variables KServe's storage initializer reads for an S3 endpoint (what KServe sets from the
    service account's Secret and its serving.kserve.io/s3-* annotations)."""
    return {"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": KEY,
            "AWS_ENDPOINT_URL": endpoint or swift.endpoint, "AWS_DEFAULT_REGION": S3_REGION,
            "S3_USE_HTTPS": "0", "S3_VERIFY_SSL": "0"}


def stop_requested() -> threading.Event:
    """Set on Ctrl-C or SIGTERM (a handler, not a blocked signal mask, which the children would inherit)."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def serve_until(stop: threading.Event) -> None:
    while not stop.wait(1):
        pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["serve"]:
        print("usage: python -m dev.swift serve", file=sys.stderr)
        return 2
    stop = stop_requested()
    swift = LocalSwift().start()
    print(json.dumps(s3_settings(swift)), flush=True)
    try:
        serve_until(stop)
    finally:
        swift.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
