"""Where a request's CPU goes, stage by stage, and a change's effect before/after in one run (issue 20).

`python -m benchmark.profile [--baseline REF[,REF...]]` (`make bench-profile`). For each target, a real server
(started as `make bench` starts it, against the replayed farm) serves the ordinary mix at the saturating
concurrency:

1. **CPU per request, alternating variants.** With `--baseline REF`, the server of git revision REF (exported
   into `.state/bench/baseline/`; several, comma-separated) and the server of this checkout take turns,
   `--rounds` times, each serving `--requests` requests; the CPU of the server process and of its workers
   (psutil, over exactly those requests) and the throughput are compared by their medians over the rounds.
   Without it, this checkout alone.
2. **Stages.** One more run of each variant under py-spy (`--subprocesses --nonblocking`: the sampler does
   not stop the processes it measures). Each sampled stack goes to one stage, by the innermost frame that
   names one (`STAGES`); a stage's share of its process's samples times that process's CPU per request is
   the stage's CPU per request.
3. **The in-process limit** (`limit.py`, as `make bench` measures it) before and after, and the saturation
   ratio of each variant against it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.__main__ import REPO, make_settings, prepare_all
from benchmark.loadgen import LoadResult, RequestSpec
from benchmark.procs import Child, tree_cpu
from benchmark.record import Prepared, farm_endpoint, record_target, recording_digest
from benchmark.recordings import Recording
from benchmark.report import ServiceReport, machine_facts, utc_now
from benchmark.suite import BenchSettings, Context, in_process_limit, load, request_mixes, say, start_replay
from benchmark.suite import start_server as start_suite_server
from benchmark.targets import Target, default_targets

SERVER, WORKER = "server process", "workers"


@dataclass(frozen=True)
class Stage:
    name: str
    role: str  # SERVER or WORKER: the process whose samples it counts
    patterns: tuple[str, ...]  # regexes matched against one frame: "function (path:line)"


# A stack goes to the stage named by its innermost frame that any stage of its process matches; for one frame,
# the first stage listed wins. JSON, pickle and socket calls are generic: their caller says what they are for.
STAGES: tuple[Stage, ...] = (
    Stage(
        "logging and metrics",
        SERVER,
        (r"[(/]logging/", r"prometheus_client", r"wikiserve/(logs|metrics)\.py", r"timing_asgi"),
    ),
    Stage(
        "the MediaWiki fetch and JSON decoding",
        SERVER,
        (
            r"revscoring_server/fetch\.py",
            r"wikiserve/mediawiki\.py",
            r"[(/]mwapi/",
            r"[(/]aiohttp/",
            r"[(/]yarl/",
            r"[(/]multidict/",
        ),
    ),
    Stage(
        "building and pickling the job, collecting the result",
        SERVER,
        (
            r"multiprocessing/",
            r"concurrent/futures/",
            r"revscoring_server/(workers|executor)\.py",
            r"_chain_future",
            r"wrap_future",
            r"scorer\.py.*_extract",
            r"RevisionJob",
        ),
    ),
    Stage(
        "the response and its encoding",
        SERVER,
        (
            r"revscoring_server/response\.py",
            r"orjson",
            r"json/encoder",
            r"fastapi/encoders",
            r"starlette/responses",
            r"serialize_response",
            r"_ResponseTracker\.send",
            r"\.send \(uvicorn",
        ),
    ),
    Stage(
        "validation",
        SERVER,
        (
            r"wikiserve/(validation|event_schema|event_claims|events)\.py",
            r"revscoring_server/model\.py.*preprocess",
        ),
    ),
    Stage(
        "scorer: cache, admission, batching",
        SERVER,
        (r"revscoring_server/scorer\.py", r"wikiserve/(score_cache|admission)\.py"),
    ),
    Stage(
        "HTTP and KServe",
        SERVER,
        (
            r"[(/]uvicorn/",
            r"[(/]starlette/",
            r"[(/]fastapi/",
            r"[(/]kserve/",
            r"/h11/",
            r"[(/]httptools/",
            r"wikiserve/(server|kserve_adapter)\.py",
            r"revscoring_server/model\.py",
            r"[(/]pydantic",
        ),
    ),
    Stage("event loop, sockets, threads", SERVER, (r".",)),
    Stage("logging and metrics", WORKER, (r"[(/]logging/", r"prometheus_client")),
    Stage(
        "scoring",
        WORKER,
        (r"[(/]sklearn/", r"revscoring/scoring/", r"^_score \(revscoring_server/scoring\.py"),
    ),
    Stage(
        "extraction",
        WORKER,
        (
            r"revscoring/",
            r"[(/]nltk/",
            r"[(/]enchant/",
            r"[(/]mwparserfromhell/",
            r"[(/]deltas/",
            r"[(/]mwtypes/",
            r"revscoring_server/(scoring|definitions)\.py",
        ),
    ),
    Stage(
        "unpickling the job, pickling the result",
        WORKER,
        (r"multiprocessing/", r"concurrent/futures/", r"revscoring_server/workers\.py"),
    ),
    Stage("other", WORKER, (r".",)),
)


# Where a process's own work starts: the event loop's dispatch, a thread's start, a worker's job loop. The
# frames outside (start-up, `serve`, the loop itself) are the same for every stack and name no stage.
BOUNDARY = re.compile(
    r"(^|\.)(run \(asyncio/runners|_run_once \(asyncio/|_run \(asyncio/events|_bootstrap_inner \(threading|"
    r"_process_worker \(concurrent|_serve_jobs \()"
)
# A stack whose innermost frame waits for input (the event loop's select, or uvloop's loop in C, which shows
# as its Python caller; a worker reading its pipe) is not counted: a sampler sees such a thread as running
# from the moment it is woken, while it waits for a core
# (the machine is saturated), which would inflate these frames many times over their CPU.
WAITING = re.compile(
    r"(\.select \(selectors\.py|^Runner\.run \(asyncio/runners|\._recv \(multiprocessing/connection\.py)"
)


def classify(frames: list[str], role: str) -> str:
    """The stage of one stack of process `role` (outermost frame first)."""
    stages = [stage for stage in STAGES if stage.role == role]
    inner = [i for i, frame in enumerate(frames) if BOUNDARY.match(frame)]
    if inner:
        frames = frames[inner[-1] + 1 :]
    for frame in reversed(frames):
        for stage in stages[:-1]:
            if any(re.search(pattern, frame) for pattern in stage.patterns):
                return stage.name
    return stages[-1].name


@dataclass
class Samples:
    """py-spy sample counts per process role and stage."""

    counts: dict[str, Counter] = field(default_factory=lambda: {SERVER: Counter(), WORKER: Counter()})
    waiting: int = 0  # samples of a thread waiting for input (WAITING), left out of the shares

    def share(self, role: str, stage: str) -> float:
        total = sum(self.counts[role].values())
        return self.counts[role][stage] / total if total else 0.0


def parse_raw(lines: Iterable[str], server_pid: int) -> Samples:
    """py-spy's raw (collapsed) output of `--subprocesses`: `process <pid>:"<cmd>";frame;... <count>`. A
    worker's stack begins with the server's frames up to the fork, then its own `process` frame."""
    samples = Samples()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        starts = [i for i, frame in enumerate(frames) if frame.startswith("process ")]
        pid = int(frames[starts[-1]].split()[1].split(":")[0]) if starts else server_pid
        own = frames[starts[-1] + 1 :] if starts else frames
        if own and WAITING.search(own[-1]):
            samples.waiting += int(count)
            continue
        role = SERVER if pid == server_pid else WORKER
        samples.counts[role][classify(own, role)] += int(count)
    return samples


@dataclass
class Variant:
    """A server to measure: this checkout's, or a baseline revision's source tree."""

    label: str
    sources: Path  # the tree holding python/, revscoring/, outlink-topic-model/
    server: Child | None = None
    # req/s; CPU ms per request of the server process, its workers, and the harness on the same cores
    rounds: list[tuple[float, float, float, float]] = field(default_factory=list)
    samples: Samples | None = None
    sampled_cpu: tuple[float, float] = (0.0, 0.0)

    @property
    def pythonpath(self) -> str:
        return os.pathsep.join(
            str(self.sources / part) for part in ("python", "revscoring", "outlink-topic-model")
        )

    def median(self, index: int) -> float:
        return statistics.median(values[index] for values in self.rounds)


def export_revision(ref: str, state_dir: Path) -> Path:
    """The source tree of git revision `ref`, exported once into the state folder."""
    commit = subprocess.run(["git", "rev-parse", ref], cwd=REPO, check=True, capture_output=True, text=True)
    sha = commit.stdout.strip()
    target = state_dir / "baseline" / sha[:12]
    if not (target / "python").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha], cwd=REPO, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


async def measured_run(
    server: Child, replay: Child, specs: list[RequestSpec], concurrency: int, requests: int
) -> tuple[LoadResult, float, float, float]:
    """`requests` requests at `concurrency`; CPU ms per request of the server process, of its workers, and of
    the harness (the MediaWiki stand-in and the load generator, which share the server's cores)."""
    before, replay_before = tree_cpu(server.process.pid), tree_cpu(replay.process.pid)[0]
    result = await load(server, specs, concurrency, total=requests, name="profile", progress_s=0)
    after, replay_after = tree_cpu(server.process.pid), tree_cpu(replay.process.pid)[0]
    done = max(1, result.completed + result.errors)
    harness_s = replay_after - replay_before + result.generator_cpu_s
    return (
        result,
        (after[0] - before[0]) / done * 1000,
        (after[1] - before[1]) / done * 1000,
        harness_s / done * 1000,
    )


async def sampled_run(
    server: Child, replay: Child, specs: list[RequestSpec], concurrency: int, requests: int, rate: int
) -> tuple[Samples, float, float]:
    """One run under py-spy: the samples, and CPU ms per request (server process, workers) of that run."""
    out = Path(tempfile.mkdtemp(prefix="profile-")) / "stacks.txt"
    spy = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(server.process.pid),
            "--subprocesses",
            "--nonblocking",
            "--format",
            "raw",
            "--rate",
            str(rate),
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    await asyncio.sleep(1.0)  # py-spy attaches to every process of the tree
    try:
        _, server_ms, workers_ms, _ = await measured_run(server, replay, specs, concurrency, requests)
    finally:
        spy.send_signal(signal.SIGINT)
        _, errors = await asyncio.to_thread(spy.communicate, None, 60)
    if not out.exists():
        raise RuntimeError(f"py-spy wrote nothing: {errors.decode(errors='replace')[-500:]}")
    return parse_raw(out.read_text().splitlines(), server.process.pid), server_ms, workers_ms


async def record_calls_of(
    variant: Variant, target: Target, prepared: Prepared, settings: BenchSettings
) -> None:
    """Adds the MediaWiki answers a baseline's server asks for to the target's recording (once per baseline
    and recording): its fetch code may make other calls than this checkout's."""
    marker = variant.sources / f"recorded-{target.name}-{recording_digest(REPO, target)}"
    if marker.exists():
        return
    say(f"  recording the MediaWiki calls of {variant.label}")
    with farm_endpoint() as farm_url:
        extra, _, _ = await record_target(
            target, farm_url, settings.state_dir, REPO, {"PYTHONPATH": variant.pythonpath}
        )
    recording = Recording.load(prepared.recording_path)
    recording.merge(extra)
    recording.save(prepared.recording_path)
    marker.touch()


def start_variant_server(ctx: Context, variant: Variant) -> Child:
    return start_suite_server(ctx, None, f"-{variant.label}", {"PYTHONPATH": variant.pythonpath})


async def profile_target(
    target: Target,
    prepared: Prepared,
    settings: BenchSettings,
    variants: list[Variant],
    args: argparse.Namespace,
) -> list[str]:
    for variant in variants:
        if variant.sources != REPO:
            await record_calls_of(variant, target, prepared, settings)
    replay = await asyncio.to_thread(start_replay, prepared, settings, target.name)
    ordinary, heavy_mix = request_mixes(target, prepared)
    ctx = Context(target, settings, replay, ordinary, heavy_mix, ordinary, ServiceReport(target.name))
    try:
        first = await in_process_limit(ctx, prepared)
        for variant in variants:
            variant.server = await asyncio.to_thread(start_variant_server, ctx, variant)
            await load(
                variant.server, ordinary, args.concurrency, duration_s=3.0, name="warm-up", progress_s=0
            )
        for number in range(args.rounds):
            for variant in variants:
                result, server_ms, workers_ms, harness_ms = await measured_run(
                    variant.server, replay, ordinary, args.concurrency, args.requests
                )
                variant.rounds.append((result.throughput, server_ms, workers_ms, harness_ms))
                say(
                    f"  round {number + 1} {variant.label}: {result.throughput:.1f} req/s, server process "
                    f"{server_ms:.2f} ms, workers {workers_ms:.2f} ms, harness {harness_ms:.2f} ms per "
                    f"request, {result.errors} errors"
                )
        for variant in variants:
            samples, server_ms, workers_ms = await sampled_run(
                variant.server, replay, ordinary, args.concurrency, args.requests, args.rate
            )
            variant.samples, variant.sampled_cpu = samples, (server_ms, workers_ms)
        second = await in_process_limit(ctx, prepared)
    finally:
        for variant in variants:
            if variant.server is not None:
                variant.server.stop()
        replay.stop()
    limit = (first["throughput"] + second["throughput"]) / 2
    return target_report(target, variants, limit, args)


def target_report(
    target: Target, variants: list[Variant], limit: float, args: argparse.Namespace
) -> list[str]:
    in_process_mean_ms = settings_cores() / limit * 1000

    def row(label: str, cell: Callable[[Variant], str]) -> str:
        return f"| {label} | " + " | ".join(cell(variant) for variant in variants) + " |"

    lines = [
        f"#### {target.name}",
        "",
        f"{args.requests:,} requests a round at c={args.concurrency}, {args.rounds} rounds alternating; "
        f"in-process limit {limit:.1f} req/s (mean of before and after), so the in-process mean is "
        f"{in_process_mean_ms:.2f} ms of CPU per request.",
        "",
        "| | " + " | ".join(v.label for v in variants) + " |",
        "|---|" + "---:|" * len(variants),
        row("throughput (median of rounds)", lambda v: f"{v.median(0):.1f} req/s"),
        row("saturation / in-process limit (target >= 0.75)", lambda v: f"{v.median(0) / limit:.2f}"),
        row("server-process CPU per request (target <= 1.0 ms)", lambda v: f"{v.median(1):.2f} ms"),
        row("worker CPU per request", lambda v: f"{v.median(2):.2f} ms"),
        row(
            "worker CPU / in-process mean (target <= 1.1)",
            lambda v: f"{v.median(2) / in_process_mean_ms:.2f}",
        ),
        row(
            "harness CPU per request: MediaWiki stand-in + load generator, on the same cores",
            lambda v: f"{v.median(3):.2f} ms",
        ),
        row(
            "throughput / what the cores allow (cores / CPU per request of all four)",
            lambda v: f"{v.median(0) / ceiling(v):.2f}",
        ),
        "",
        "Stages (one more run of each under py-spy; CPU per request = share of the process's samples x its "
        "CPU per request in that run):",
        "",
        "| process | stage | " + " | ".join(v.label for v in variants) + " |",
        "|---|---|" + "---:|" * len(variants),
    ]
    for role, index in ((SERVER, 0), (WORKER, 1)):
        for stage in dict.fromkeys(s.name for s in STAGES if s.role == role):
            cells = []
            for variant in variants:
                assert variant.samples is not None
                share = variant.samples.share(role, stage)
                cells.append(f"{share * variant.sampled_cpu[index]:.2f} ms ({share:.0%})")
            lines.append(f"| {role} | {stage} | " + " | ".join(cells) + " |")
        lines.append(
            f"| {role} | **all** | "
            + " | ".join(f"**{v.sampled_cpu[index]:.2f} ms**" for v in variants)
            + " |"
        )
    return lines


def ceiling(variant: Variant) -> float:
    """Requests a second the cores could serve if every CPU-millisecond the run measured were busy."""
    per_request_ms = sum(variant.median(index) for index in (1, 2, 3))
    return settings_cores() / per_request_ms * 1000


def baselines(args: argparse.Namespace) -> list[str]:
    return [ref.strip() for ref in args.baseline.split(",") if ref.strip()]


def settings_cores() -> int:
    return len(os.sched_getaffinity(0))


async def run(args: argparse.Namespace) -> str:
    settings = make_settings(argparse.Namespace(only="", quick=False))
    available = default_targets(REPO, REPO / "models")
    targets = [available[name.strip()] for name in args.targets.split(",") if name.strip()]
    prepared = await prepare_all(targets, settings, False)
    facts = machine_facts(REPO)
    head = [
        f"Run of {utc_now():%Y-%m-%d %H:%M} UTC, commit {facts['commit']}"
        + (f" against {args.baseline}" if args.baseline else "")
        + f", {facts['cores']} cores ({facts['cpu']}), Python {facts['python']}, load average "
        f"{os.getloadavg()[0]:.1f} at the start.",
        "",
    ]
    sections = []
    for target in targets:
        say(f"== {target.name}")
        variants = [
            Variant(f"baseline {ref}", export_revision(ref, settings.state_dir)) for ref in baselines(args)
        ] + [Variant("this checkout", REPO)]
        sections += await profile_target(target, prepared[target.name], settings, variants, args) + [""]
    return "\n".join(head + sections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="editquality,articlequality")
    parser.add_argument(
        "--baseline", default="", help="git revisions to compare with (comma-separated), alternating"
    )
    parser.add_argument("--requests", type=int, default=3000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = parser.parse_args(argv)
    text = asyncio.run(run(args))
    out = REPO / ".state" / "bench" / "results" / f"profile-{utc_now():%Y%m%dT%H%M%S}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)
    say(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
