"""Benchmark results: the markdown table, the PNG plot, and the performance section of the README."""

from __future__ import annotations

import math
import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from benchmark.loadgen import LoadResult

README_START = "<!-- bench:results:start -->"
README_END = "<!-- bench:results:end -->"


@dataclass(frozen=True)
class Check:
    """One target of the issue: `value` compared with `threshold` (>= when `at_least`, else <=)."""

    service: str
    target: str
    value: float
    threshold: float
    at_least: bool = True
    detail: str = ""

    @property
    def met(self) -> bool:
        if math.isnan(self.value):
            return False
        return self.value >= self.threshold if self.at_least else self.value <= self.threshold


@dataclass
class ServiceReport:
    service: str
    sweep: list[LoadResult] = field(default_factory=list)
    limit_throughput: float | None = None
    distributions: dict[str, list[float]] = field(default_factory=dict)  # run label -> latencies (s)
    checks: list[Check] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)  # e.g. "start-up to ready" -> "4.2 s"


@dataclass
class RunReport:
    started: datetime
    services: list[ServiceReport] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0


def machine_facts(repo: Path) -> dict[str, str]:
    return {
        "cores": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "commit": git_commit(repo),
    }


def git_commit(repo: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "none (no commit yet)"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return commit + (" (with uncommitted changes)" if dirty else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"


def sweep_table(service: ServiceReport) -> list[str]:
    lines = [
        "| concurrency | throughput (req/s) | p50 (ms) | p90 (ms) | p99 (ms) | requests | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in service.sweep:
        lines.append(
            f"| {run.concurrency} | {run.throughput:.1f} | {_ms(run.percentile_ms(50))} | "
            f"{_ms(run.percentile_ms(90))} | {_ms(run.percentile_ms(99))} | {run.completed} | "
            f"{run.errors} |"
        )
    if service.limit_throughput is not None:
        lines.append(f"| in-process limit | {service.limit_throughput:.1f} | | | | | |")
    return lines


def checks_table(checks: list[Check]) -> list[str]:
    lines = ["| target | measured | required | met | how |", "|---|---:|---:|:---:|---|"]
    for check in checks:
        sign = ">=" if check.at_least else "<="
        value = "n/a" if math.isnan(check.value) else f"{check.value:.2f}"
        lines.append(
            f"| {check.target} | {value} | {sign} {check.threshold:g} | "
            f"{'yes' if check.met else '**no**'} | {check.detail} |"
        )
    return lines


def to_markdown(report: RunReport) -> str:
    lines = [
        f"Run of {report.started:%Y-%m-%d %H:%M} UTC, {report.duration_s / 60:.1f} min; "
        + ", ".join(f"{key}: {value}" for key, value in report.facts.items())
        + ".",
        "",
    ]
    for service in report.services:
        lines += [f"#### {service.service}", "", *sweep_table(service), ""]
        if service.checks:
            lines += [*checks_table(service.checks), ""]
        if service.facts:
            lines += [f"- {key}: {value}" for key, value in service.facts.items()] + [""]
    return "\n".join(lines)


def write_plot(report: RunReport, path: Path) -> None:
    """Per service: latency distributions (CDF, log scale) and throughput vs concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, len(report.services))
    figure, axes = plt.subplots(rows, 2, figsize=(12, 4 * rows), squeeze=False)
    for row, service in zip(axes, report.services, strict=False):
        _plot_distributions(row[0], service)
        _plot_throughput(row[1], service)
    figure.suptitle(f"{report.facts.get('commit', '')} - {report.facts.get('cores', '?')} cores", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _plot_distributions(axis: object, service: ServiceReport) -> None:
    for label, values in service.distributions.items():
        if not values:
            continue
        ordered = sorted(v * 1000.0 for v in values)
        fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
        axis.plot(ordered, fractions, label=label)
    axis.set_xscale("log")
    axis.set_xlabel("latency (ms)")
    axis.set_ylabel("fraction of requests")
    axis.set_title(f"{service.service}: latency distribution")
    axis.grid(True, alpha=0.3)
    if service.distributions:
        axis.legend(fontsize=7)


def _plot_throughput(axis: object, service: ServiceReport) -> None:
    concurrency = [run.concurrency for run in service.sweep]
    axis.plot(concurrency, [run.throughput for run in service.sweep], marker="o", label="server")
    if service.limit_throughput is not None:
        axis.axhline(service.limit_throughput, color="gray", linestyle="--", label="in-process limit")
    axis.set_xscale("log", base=2)
    axis.set_xlabel("concurrency (closed-loop clients)")
    axis.set_ylabel("throughput (req/s)")
    axis.set_ylim(bottom=0)
    axis.set_title(f"{service.service}: throughput")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7)


def update_readme(readme: Path, markdown: str) -> bool:
    """Replaces the text between the README's result markers; False when the markers are missing."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return False
    readme.write_text(
        text[: start + len(README_START)] + "\n" + markdown.strip() + "\n" + text[end:], encoding="utf-8"
    )
    return True


def write_results(report: RunReport, results_dir: Path, readme: Path | None) -> tuple[Path, Path | None]:
    """Writes results-<time>.md and .png (and latest.md/.png) into `results_dir`; updates `readme`."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = report.started.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    markdown = to_markdown(report)
    table = results_dir / f"results-{stamp}.md"
    table.write_text(markdown, encoding="utf-8")
    (results_dir / "latest.md").write_text(markdown, encoding="utf-8")
    plot: Path | None = results_dir / f"results-{stamp}.png"
    try:
        write_plot(report, plot)
        (results_dir / "latest.png").write_bytes(plot.read_bytes())
    except ImportError:  # matplotlib is a dev dependency; the table is still complete without the plot
        plot = None
    if readme is not None:
        update_readme(readme, markdown)
    return table, plot


def utc_now() -> datetime:
    return datetime.now(UTC)
