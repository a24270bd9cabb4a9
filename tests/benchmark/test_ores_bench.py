"""`python -m benchmark.ores`: the revision choice and the report's ratios (the run: `make bench-ores`)."""

from __future__ import annotations

import argparse

from benchmark.ores import enwiki_revisions, report


def test_revisions_skip_hidden_text_and_the_large_article():
    manifest = {
        "enwiki": {
            "pages": [{"rev_ids": [3, 1, 2]}, {"rev_ids": [7, 9]}],
            "revisions": [{"rev_id": 2, "hidden": True}, {"rev_id": 3}],
            "special": {"large_rev_id": 9},
        }
    }
    assert enwiki_revisions(manifest) == [1, 3, 7]


def test_the_report_gives_each_ratio_next_to_its_goal():
    pair = {
        "ores_calls_per_request": 3.0,
        "ores_calls_per_pair": 0.03,
        "single_calls_per_pair": 1.5,
        "ores_cpu_ms_per_pair": 2.0,
        "single_cpu_ms_per_pair": 5.0,
        "ores_wall_s": 1.0,
        "single_wall_s": 2.0,
    }
    results = {
        "revisions": 50,
        **{f"damaging+goodfaith_{key}": value for key, value in pair.items()},
        **{f"articlequality+draftquality_{key}": value * 2 for key, value in pair.items()},
        "cold_rps": 2.0,
        "warm_rps": 90.0,
        "client_s": 10.0,
        "one_by_one_s": 40.0,
    }
    args = argparse.Namespace(rounds=2, client_revisions=1000)
    text = report(results, args)
    assert "| damaging+goodfaith: MediaWiki calls per scored pair | 0.03 | 1.50 | 0.02 | <= 0.5 |" in text
    assert "| damaging+goodfaith: MediaWiki calls of the 50-revision request | 3.0 | | | <= 6 |" in text
    assert "| damaging+goodfaith: server CPU per scored pair (ms) | 2.00 | 5.00 | 0.40 | <= 0.55 |" in text
    assert (
        "| articlequality+draftquality: server CPU per scored pair (ms) | 4.00 | 10.00 | 0.40 | <= 0.55 |"
        in text
    )
    assert "| 2.0 | 90.0 | 45.0 | >= 20 |" in text
    assert "| 1000 revisions x 2 models, end to end (s) | 10.0 | 40.0 |" in text
