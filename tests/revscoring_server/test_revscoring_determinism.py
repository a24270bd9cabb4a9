"""The same revision always gets the same answer: clients cache scores and compare them.

Every row of the table is asked the same question several times, by one server whose extraction runs in
worker processes (a request may land on any of them); the answers must be byte-identical.
langdetect (translatewiki's features) was the one source of randomness.
"""

from __future__ import annotations

import pytest

from dev.seed_table import revscoring_rows

ROWS = revscoring_rows()
REPEATS = 3


@pytest.mark.parametrize("row", ROWS, ids=[row.isvc for row in ROWS])
def test_identical_requests_get_identical_answers(revscoring_all, farm, row):
    rev_id = farm.manifest[row.dbname]["special"]["good_rev_id"]
    body = {"rev_id": rev_id, "extended_output": True}
    answers = [revscoring_all.predict(row.isvc, body, timeout_s=60) for _ in range(REPEATS)]
    assert all(answer.status_code == 200 for answer in answers), answers[0].text
    assert len({answer.content for answer in answers}) == 1, [answer.text[:300] for answer in answers]
