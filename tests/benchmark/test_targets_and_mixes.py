from pathlib import Path

from benchmark.record import Prepared
from benchmark.suite import request_mixes
from benchmark.targets import HEAVY, ORDINARY, Candidate, default_targets, revision_candidates

WIKI = {"dbname": "enwiki", "lang": "en",
        "pages": [{"title": "River", "rev_ids": [1, 2, 3]}, {"title": "Library", "rev_ids": [4, 9]}],
        "special": {"hidden_rev_id": 2, "large_rev_id": 9}}


def test_revision_candidates_skip_the_hidden_one_and_mark_the_large_one_heavy():
    candidates = revision_candidates(WIKI)
    assert [c.body["rev_id"] for c in candidates] == [1, 3, 4, 9]
    assert [c.label for c in candidates] == [ORDINARY, ORDINARY, ORDINARY, HEAVY]


def test_targets_start_like_their_images():
    targets = default_targets(Path("/repo"), Path("/models"))
    damaging = targets["editquality"]
    env = damaging.server_env("http://127.0.0.1:9", 8123)
    assert env["INFERENCE_NAME"] == "enwiki-damaging" and env["WIKI_HOST"] == "en.wikipedia.org"
    assert env["MODEL_PATH"] == "/models/enwiki-damaging/model.bin" and env["WIKI_URL"] == "http://127.0.0.1:9"
    assert damaging.server_args(8123) == ["revscoring_server", "--http_port=8123"]
    assert env["SCORE_CACHE_SIZE"] == "0"  # the mix repeats revisions: measured is scoring, not the cache
    assert targets["outlink"].server_args(1) == ["outlink_server.predictor", "--http_port=1"]
    assert "INFERENCE_NAME" not in targets["outlink"].server_env("u", 1)


def test_heavy_mix_has_every_tenth_request_heavy():
    target = default_targets(Path("/repo"), Path("/models"))["editquality"]
    ordinary = [Candidate({"rev_id": n}) for n in range(1, 31)]
    prepared = Prepared(Path("unused"), ordinary, [Candidate({"rev_id": 99}, HEAVY)], [])
    plain, mixed = request_mixes(target, prepared)
    assert len(plain) == 30 and {s.label for s in plain} == {ORDINARY}
    assert len(mixed) == 300
    assert [i for i, s in enumerate(mixed) if s.label == HEAVY] == list(range(9, 300, 10))
    assert all(s.path == "/v1/models/enwiki-damaging:predict" for s in mixed)
