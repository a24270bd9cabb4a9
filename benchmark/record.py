"""Recording: the real server runs against a recording proxy in front of the farm, once per target.

Each candidate request is sent once; the proxy stores every MediaWiki answer. Requests the server answers
with 200 make the load mix. The recording is reused until the farm's manifest or the model changes (or
`--record` is given).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from benchmark.procs import free_port, start_child
from benchmark.recordings import Recording
from benchmark.replay import make_recording_app, start_app
from benchmark.targets import HEAVY, Candidate, Target, load_manifest


@dataclass
class Prepared:
    """A target's recording and its load mix."""

    recording_path: Path
    ordinary: list[Candidate]
    heavy: list[Candidate]
    skipped: list[dict]  # candidates the server refused during recording, with the status


# The code that decides which MediaWiki calls a server makes: a change to it makes the recording stale.
FETCH_CODE = (
    "python/wikiserve/mediawiki.py",
    "revscoring/revscoring_server/fetch.py",
    "outlink-topic-model/outlink_server/outlinks.py",
)


def recording_digest(repo: Path, target: Target) -> str:
    """What a recording depends on: the farm's content, the model (its features decide the API calls) and
    the fetch code."""
    digest = hashlib.sha256((repo / ".state" / "farm" / "manifest.json").read_bytes())
    digest.update(target.model_path.read_bytes())
    for path in FETCH_CODE:
        digest.update((repo / path).read_bytes())
    return digest.hexdigest()[:16]


def paths_for(state_dir: Path, target: Target) -> tuple[Path, Path]:
    base = state_dir / "recordings" / target.name
    return base.with_suffix(".json.gz"), base.with_suffix(".mix.json")


def load_prepared(state_dir: Path, target: Target, repo: Path) -> Prepared | None:
    """The saved recording and mix, when they exist and were made from the current farm."""
    recording_path, mix_path = paths_for(state_dir, target)
    if not (recording_path.exists() and mix_path.exists()):
        return None
    mix = json.loads(mix_path.read_text())
    if mix.get("digest") != recording_digest(repo, target):
        return None
    return Prepared(
        recording_path,
        [Candidate(b) for b in mix["ordinary"]],
        [Candidate(b, HEAVY) for b in mix["heavy"]],
        mix["skipped"],
    )


@contextlib.contextmanager
def farm_endpoint() -> Iterator[str]:
    """A farm of our own on a free port, for the recording only: one that others started may stop midway."""
    from dev.mediawiki_farm import running_farm

    with running_farm(port=free_port()) as farm:
        yield farm.url


async def record_target(
    target: Target, farm_url: str, state_dir: Path, repo: Path, extra_env: dict[str, str] | None = None
) -> tuple[Recording, list[Candidate], list[int]]:
    """Runs the target's server (with `extra_env`: e.g. another source tree's PYTHONPATH) against a recording
    proxy and sends every candidate once: the recording, the candidates and their statuses."""
    candidates = target.candidates(load_manifest(repo))
    recording = Recording()
    proxy_port, server_port = free_port(), free_port()
    proxy = await start_app(make_recording_app(farm_url, recording), proxy_port)
    server = start_child(
        f"record-{target.name}",
        target.server_args(server_port),
        {**target.server_env(f"http://127.0.0.1:{proxy_port}", server_port), **(extra_env or {})},
        state_dir / "logs",
        cwd=repo,
    )
    base = f"http://127.0.0.1:{server_port}"
    try:
        await asyncio.to_thread(server.wait_ready, base + target.ready_path)
        statuses = await _send_all(base + target.predict_path, candidates)
    finally:
        server.stop()
        await proxy.cleanup()
    return recording, candidates, statuses


async def record_and_save(target: Target, farm_url: str, state_dir: Path, repo: Path) -> Prepared:
    """Records the target's MediaWiki answers and its load mix, and saves both."""
    recording, candidates, statuses = await record_target(target, farm_url, state_dir, repo)
    good = [c for c, status in zip(candidates, statuses, strict=True) if status == 200]
    skipped = [{"body": c.body, "status": s} for c, s in zip(candidates, statuses, strict=True) if s != 200]
    prepared = Prepared(
        paths_for(state_dir, target)[0],
        [c for c in good if c.label != HEAVY],
        [c for c in good if c.label == HEAVY],
        skipped,
    )
    _save(prepared, recording, target, state_dir, repo)
    print(
        f"recorded {target.name}: {len(recording)} API answers, {len(prepared.ordinary)} ordinary and "
        f"{len(prepared.heavy)} heavy requests, {len(skipped)} refused",
        file=sys.stderr,
        flush=True,
    )
    return prepared


async def _send_all(url: str, candidates: list[Candidate], parallel: int = 4) -> list[int]:
    limit = asyncio.Semaphore(parallel)
    timeout = aiohttp.ClientTimeout(total=300)

    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def send(candidate: Candidate) -> int:
            async with (
                limit,
                session.post(
                    url, data=candidate.encoded(), headers={"Content-Type": "application/json"}
                ) as response,
            ):
                await response.read()
                return response.status

        return list(await asyncio.gather(*(send(c) for c in candidates)))


def _save(prepared: Prepared, recording: Recording, target: Target, state_dir: Path, repo: Path) -> None:
    if not prepared.ordinary:
        raise RuntimeError(
            f"{target.name}: the server answered none of the candidate requests with 200; "
            f"see {state_dir / 'logs'}"
        )
    recording.save(prepared.recording_path)
    mix = {
        "digest": recording_digest(repo, target),
        "target": target.name,
        "ordinary": [c.body for c in prepared.ordinary],
        "heavy": [c.body for c in prepared.heavy],
        "skipped": prepared.skipped,
    }
    paths_for(state_dir, target)[1].write_text(json.dumps(mix, indent=1))
