"""Builds and runs the images locally with podman (or docker when a Docker daemon answers).

    python -m deploy.containers build editquality [topic ...]   # make image IMAGE=editquality
    python -m deploy.containers build --all                      # make images
    python -m deploy.containers base                             # only the local base image
    python -m deploy.containers env                              # the variables to use podman by hand

Nothing machine-wide is configured: podman reads the project's own `containers.conf` and `storage.conf`
(written under `.state/containers/` on every call, through CONTAINERS_CONF / CONTAINERS_STORAGE_CONF), so
images and layers live in `.state/containers/storage`. The settings this machine needs (measured):
- runtime `runc`: Debian's default `crun` fails here ("cgroups in hybrid mode not supported");
- default ulimits no higher than the current hard limits: the runtime cannot raise rlimits (no
  CAP_SYS_RESOURCE), and podman's defaults ask for more;
- cgroupfs and a file events log: there is no systemd session to talk to.

No registry is reachable, so the production base `docker-registry.wikimedia.org/bookworm` is made locally
(debootstrap --variant=minbase + import) under that very name: the generated build files work unchanged
where the registry is reachable. Every step skips what is done: the base when the image exists, layers
through podman's layer cache.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deploy import containerfile, images
from deploy.images import BASE_IMAGE, IMAGES, ImageSpec
from deploy.seed_table import REPO_ROOT

STATE = REPO_ROOT / ".state" / "containers"
IMAGES_STATE = REPO_ROOT / ".state" / "images"
CONTEXT = IMAGES_STATE / "context"
WHEELHOUSE = REPO_ROOT / ".state" / "wheelhouse"
WORD2VEC = REPO_ROOT / "word2vec"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SUITE = "bookworm"
# The production base has Debian's updates and security suites enabled; so has the local one.
BASE_SOURCES = f"""\
deb {DEBIAN_MIRROR} {DEBIAN_SUITE} main
deb {DEBIAN_MIRROR} {DEBIAN_SUITE}-updates main
deb http://deb.debian.org/debian-security {DEBIAN_SUITE}-security main
"""


# Measured: runc here could set nproc 32768 but not the reported hard limit (96363), so the limit a
# container asks for is the smaller of the two.
NPROC_CAP = 32768


def hard_limit(kind: int, cap: int | None = None) -> str:
    limit = resource.getrlimit(kind)[1]
    if cap is not None and (limit == resource.RLIM_INFINITY or limit > cap):
        return str(cap)
    return "-1" if limit == resource.RLIM_INFINITY else str(limit)


def containers_conf() -> str:
    nofile, nproc = hard_limit(resource.RLIMIT_NOFILE), hard_limit(resource.RLIMIT_NPROC, NPROC_CAP)
    return f"""\
# Written by deploy/containers.py on every call (the ulimits follow the current hard limits).
[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def storage_conf() -> str:
    return f"""\
# Written by deploy/containers.py: images and layers stay inside the checkout (git-ignored).
[storage]
driver = "overlay"
graphroot = "{STATE / 'storage'}"
runroot = "{STATE / 'run'}"
"""


def podman_env() -> dict[str, str]:
    """The environment under which `podman` uses the project's configuration and storage."""
    STATE.mkdir(parents=True, exist_ok=True)
    for name, text in (("containers.conf", containers_conf()), ("storage.conf", storage_conf())):
        path = STATE / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return {**os.environ, "CONTAINERS_CONF": str(STATE / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(STATE / "storage.conf")}


def docker_daemon_reachable() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def engine() -> str:
    """`podman`, unless LIFT_WING_ENGINE says otherwise or only a Docker daemon is there."""
    chosen = os.environ.get("LIFT_WING_ENGINE")
    if chosen:
        return chosen
    if shutil.which("podman"):
        return "podman"
    if docker_daemon_reachable():
        return "docker"
    raise RuntimeError("neither podman nor a Docker daemon: run `make setup` (it installs podman)")


def run_engine(args: Sequence[str], check: bool = True, capture: bool = False,
               input_text: str | None = None, timeout_s: float | None = None) -> subprocess.CompletedProcess:
    """`podman <args>` (or docker) with the project's configuration."""
    tool = engine()
    env = podman_env() if tool == "podman" else dict(os.environ)
    return subprocess.run([tool, *args], env=env, check=check, text=True, input=input_text,
                          capture_output=capture, timeout=timeout_s)


def image_exists(tag: str) -> bool:
    return run_engine(["image", "inspect", tag], check=False, capture=True).returncode == 0


def ensure_base(log: Callable[[str], None] = print) -> bool:
    """The local base image under the production name; returns False when it existed already."""
    if image_exists(BASE_IMAGE):
        return False
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is missing: run `make setup` (requirements/apt-images.txt)")
    started = time.monotonic()
    STATE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=STATE, prefix="rootfs-") as rootfs:
        subprocess.run(["debootstrap", "--variant=minbase", DEBIAN_SUITE, rootfs, DEBIAN_MIRROR],
                       check=True, stdout=subprocess.DEVNULL)
        (Path(rootfs) / "etc/apt/sources.list").write_text(BASE_SOURCES)
        shutil.rmtree(Path(rootfs) / "var/cache/apt/archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", rootfs, "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        tool = engine()
        env = podman_env() if tool == "podman" else None
        subprocess.run([tool, "import", "--change", "CMD [\"/bin/bash\"]", "-", BASE_IMAGE],
                       stdin=tar.stdout, check=True, env=env, stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            raise RuntimeError("tar of the debootstrap tree failed")
    log(f"base {BASE_IMAGE}: built in {time.monotonic() - started:.0f} s")
    return True


def _link_tree(source: Path, target: Path, hard_links: bool = False) -> None:
    """Copies `source` into `target`, skipping bytecode caches. `hard_links` only for our own generated
    folders (the wheelhouse): a hard link raises the link count of the source file too, and NLTK refuses
    to open multiply-linked corpus files, so data read by others is always copied."""
    for path in sorted(source.rglob("*")):
        if "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        destination = target / path.relative_to(source)
        if path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            destination.parent.mkdir(parents=True, exist_ok=True)
            if hard_links:
                try:
                    os.link(path, destination)
                    continue
                except OSError:
                    pass
            shutil.copy2(path, destination)


def nltk_corpus_folder(corpus: str) -> Path:
    """Where this machine's NLTK finds `corpus` (NLTK_DATA, or the venv's stand-ins from `make setup`)."""
    import nltk

    if (Path(sys.prefix) / "nltk_data").as_posix() not in nltk.data.path:
        nltk.data.path.append((Path(sys.prefix) / "nltk_data").as_posix())
    try:
        found = nltk.data.find(f"corpora/{corpus}")
    except LookupError:
        raise RuntimeError(f"NLTK corpus {corpus} not found: run `make setup` (offline, with NLTK_DATA "
                           "set to a folder that has it, e.g. ../shared/nltk_data)") from None
    path = Path(str(found).removesuffix(".zip"))
    if not path.is_dir():
        raise RuntimeError(f"NLTK corpus {corpus} is only a zip at {found}: run `make setup`")
    return path


def stage_context(specs: Sequence[ImageSpec], context: Path = CONTEXT) -> Path:
    """The build context: only what the build files read. Rebuilt each time (a few seconds); podman
    hashes what COPY reads, so unchanged files keep their cached layers."""
    if not (WHEELHOUSE / ".stamp").exists():
        raise RuntimeError("no wheelhouse: run `make setup` (python -m deploy.wheelhouse)")
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    sources = {source for spec in specs for source in spec.sources}
    for source in sorted(sources) + ["requirements", "deploy"]:
        _link_tree(REPO_ROOT / source, context / source)
    _link_tree(WHEELHOUSE, context / containerfile.CONTEXT_WHEELHOUSE, hard_links=True)
    for corpus in sorted({corpus for spec in specs for corpus in spec.nltk_corpora}):
        _link_tree(nltk_corpus_folder(corpus), context / containerfile.CONTEXT_NLTK_DATA / "corpora" / corpus)
    if any(spec.word_vectors for spec in specs):
        if not (WORD2VEC / ".generated").exists():
            raise RuntimeError("no word vectors in word2vec/: run `make setup` (python -m dev.word_vectors)")
        _link_tree(WORD2VEC, context / containerfile.CONTEXT_WORD2VEC)
    return context


def image_id(tag: str) -> str | None:
    result = run_engine(["image", "inspect", "--format", "{{.Id}}", tag], check=False, capture=True)
    return result.stdout.strip() if result.returncode == 0 else None


def _digest_tree(digest: Any, path: Path) -> None:
    for item in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if item.is_file() and "__pycache__" not in item.parts and item.suffix != ".pyc":
            digest.update(item.relative_to(REPO_ROOT if item.is_relative_to(REPO_ROOT) else path.parent)
                          .as_posix().encode() + b"\0" + item.read_bytes() + b"\0")


def build_digest(spec: ImageSpec, text: str) -> str:
    """What a build of `spec` reads: its build file (which names the vectors' digest), the files it
    copies, the NLTK corpora and the wheelhouse's requirement hash. Equal digest + same image: skip."""
    digest = hashlib.sha256(text.encode())
    for source in [*spec.sources, "requirements"]:
        _digest_tree(digest, REPO_ROOT / source)
    for corpus in spec.nltk_corpora:
        _digest_tree(digest, nltk_corpus_folder(corpus))
    stamp = WHEELHOUSE / ".stamp"
    digest.update(stamp.read_bytes() if stamp.exists() else b"no wheelhouse")
    return digest.hexdigest()


def up_to_date(spec: ImageSpec, digest: str) -> bool:
    recorded = IMAGES_STATE / f"{spec.name}.built"
    current = image_id(images.local_tag(spec.name))
    return current is not None and recorded.exists() and recorded.read_text().split() == [digest, current]


def build(spec: ImageSpec, context: Path, text: str, digest: str,
          log: Callable[[str], None] = print) -> float:
    """Builds `spec` as localhost/lift-wing/<name>:dev; returns the seconds it took."""
    started = time.monotonic()
    args = ["build", "--layers", "--network=host", "-t", images.local_tag(spec.name), "-f", "-", str(context)]
    if engine() == "podman":
        args.insert(1, "--quiet")
    run_engine(args, input_text=text, capture=False)
    took = time.monotonic() - started
    (IMAGES_STATE / f"{spec.name}.built").write_text(f"{digest} {image_id(images.local_tag(spec.name))}\n")
    log(f"image {images.local_tag(spec.name)}: built in {took:.0f} s")
    return took


def build_images(names: Sequence[str], log: Callable[[str], None] = print) -> dict[str, float]:
    """Builds the named images that changed since their last build; image name -> seconds (0: skipped)."""
    specs = [images.image(name) for name in names]
    ensure_base(log)
    IMAGES_STATE.mkdir(parents=True, exist_ok=True)
    plans = []
    for spec in specs:
        text = containerfile.render(spec)
        (IMAGES_STATE / f"{spec.name}.Containerfile").write_text(text)
        plans.append((spec, text, build_digest(spec, text)))
    todo = [(spec, text, digest) for spec, text, digest in plans if not up_to_date(spec, digest)]
    for spec, _, _ in plans:
        if spec not in [item[0] for item in todo]:
            log(f"image {images.local_tag(spec.name)}: up to date")
    took = {spec.name: 0.0 for spec in specs}
    if todo:
        context = stage_context([spec for spec, _, _ in todo])
        for spec, text, digest in todo:
            took[spec.name] = build(spec, context, text, digest, log)
    return took


def run_in_base(command: Sequence[str], repo: Path = REPO_ROOT, mount_at: str = "/src",
                extra_args: Sequence[str] = (),
                timeout_s: float | None = None) -> subprocess.CompletedProcess:
    """Runs `command` as root in a fresh, throw-away container of the local base image (a pristine Debian
    bookworm, as the production base), with `repo` mounted read-only at `mount_at` and the host's
    network (Debian's mirror and PyPI; outbound TLS needs the host's CA bundle, also mounted read-only at
    /etc/ssl/host-ca.crt). For a fresh-machine check: copy the mount to a writable place and run the
    README's commands there. Output is captured; the base is built first if needed."""
    ensure_base()
    ca_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    args = ["run", "--rm", "--network=host", "-v", f"{repo}:{mount_at}:ro"]
    if ca_bundle.exists():
        args += ["-v", f"{ca_bundle}:/etc/ssl/host-ca.crt:ro"]
    args += [*extra_args, BASE_IMAGE, *command]
    return run_engine(args, check=False, capture=True, timeout_s=timeout_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build_parser = sub.add_parser("build", help="build images (and the base when missing)")
    build_parser.add_argument("names", nargs="*", help=", ".join(spec.name for spec in IMAGES))
    build_parser.add_argument("--all", action="store_true", help="every image of deploy/images.py")
    sub.add_parser("base", help="only the local base image")
    sub.add_parser("env", help="print the variables that make podman use the project's set-up")
    args = parser.parse_args(argv)
    if args.command == "env":
        env = podman_env()
        names = ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF")
        print(" ".join(["export", *(f"{name}={env[name]}" for name in names)]))
        return 0
    if args.command == "base":
        print(f"base {BASE_IMAGE}: " + ("built" if ensure_base() else "up to date"))
        return 0
    names = [spec.name for spec in IMAGES] if args.all else args.names
    if not names:
        parser.error("name an image or pass --all")
    try:
        build_images(names)
    except (RuntimeError, KeyError, subprocess.CalledProcessError) as error:
        print(f"image build failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
