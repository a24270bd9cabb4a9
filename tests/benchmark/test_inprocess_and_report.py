import os
import time

from benchmark.inprocess import measure_limit
from benchmark.loadgen import LoadResult
from benchmark.report import (
    README_END,
    README_START,
    Check,
    RunReport,
    ServiceReport,
    to_markdown,
    update_readme,
    utc_now,
    write_results,
)


def _sleepy(payload):
    time.sleep(payload)


def test_limit_adds_up_the_rates_of_the_processes():
    result = measure_limit(_sleepy, [0.01], processes=2, duration_s=0.5, warmup=1)
    # each process can do at most 50 sleeps of 10 ms in 0.5 s; two of them about twice that
    assert result.processes == 2
    assert 60 <= result.completed <= 100
    assert 120 <= result.throughput <= 200


def _report():
    run = LoadResult(
        concurrency=8, elapsed_s=2.0, completed=200, errors=1, latencies={"ordinary": [0.010] * 99 + [0.200]}
    )
    service = ServiceReport(
        "enwiki-damaging",
        sweep=[run],
        limit_throughput=120.0,
        distributions={"c=8": run.all_latencies()},
        checks=[
            Check("enwiki-damaging", "throughput / limit", 0.83, 0.9),
            Check("enwiki-damaging", "p99 ratio", 1.2, 1.5, at_least=False),
        ],
        facts={"start-up to ready": "3.1 s"},
    )
    return RunReport(utc_now(), [service], {"cores": "2", "commit": "abc123"}, duration_s=60)


def test_markdown_holds_the_figures_and_judges_the_targets():
    text = to_markdown(_report())
    assert "| 8 | 100.0 | 10.0 | 10.0 | 10.0 | 200 | 1 |" in text
    assert "| in-process limit | 120.0 |" in text
    assert "| throughput / limit | 0.83 | >= 0.9 | **no** |" in text
    assert "| p99 ratio | 1.20 | <= 1.5 | yes |" in text
    assert "cores: 2" in text and "start-up to ready: 3.1 s" in text


def test_readme_section_is_replaced_between_the_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Bench\n\n{README_START}\nold figures\n{README_END}\n\n## After\n")
    assert update_readme(readme, "new figures")
    text = readme.read_text()
    assert "old figures" not in text and "new figures" in text and text.endswith("## After\n")
    (tmp_path / "bare.md").write_text("no markers")
    assert not update_readme(tmp_path / "bare.md", "x")


def test_results_are_written_with_a_plot(tmp_path):
    import matplotlib  # noqa: F401 - a dev requirement: its absence is a broken set-up, not a skip
    table, plot = write_results(_report(), tmp_path / "results", readme=None)
    assert table.read_text().startswith("Run of")
    assert plot is not None and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(tmp_path / "results" / "latest.png") == os.path.getsize(plot)
