"""`python -m benchmark.profile`: how py-spy's collapsed stacks become stages (`make bench-profile`)."""

from __future__ import annotations

from benchmark.profile import SERVER, WORKER, parse_raw

SERVER_PID, WORKER_PID = 100, 101
START = 'process 100:"python -m revscoring_server";<module> (revscoring_server/__main__.py:117)'
LOOP = f"{START};serve (wikiserve/server.py:470);Runner.run (asyncio/runners.py:118)"
WORKER_START = (
    f"{START};WorkerPool.start (revscoring_server/workers.py:420);"
    f'process 101:"python -m revscoring_server";_serve_jobs (revscoring_server/workers.py:240)'
)


def stacks(*lines: tuple[str, int]) -> list[str]:
    return [f"{stack} {count}" for stack, count in lines]


def test_each_stack_goes_to_the_stage_its_innermost_known_frame_names():
    samples = parse_raw(
        stacks(
            # JSON decoding called by the MediaWiki fetch belongs to the fetch
            (f"{LOOP};MediaWikiClient.get (wikiserve/mediawiki.py:140);loads (json/__init__.py:346)", 5),
            # KServe's route calling our model calling the fetch: the fetch, the innermost named
            (f"{LOOP};V1Endpoints.predict (kserve/protocol/rest/v1_endpoints.py:93);"
             "_revisions_by_id (revscoring_server/fetch.py:120)", 3),
            (f"{LOOP};HttpToolsProtocol.data_received (uvicorn/protocols/http/httptools_impl.py:195)", 2),
            (f"{LOOP};_Lane._start (revscoring_server/workers.py:298)", 1),
            (f"{WORKER_START};run_with_deadline (revscoring_server/workers.py:97);"
             "GradientBoostingClassifier.predict (sklearn/ensemble/_gb.py:1)", 4),
            (f"{WORKER_START};run_with_deadline (revscoring_server/workers.py:97);"
             "_solve (revscoring/dependencies/functions.py:235)", 6),
        ),
        SERVER_PID,
    )
    assert samples.counts[SERVER] == {
        "the MediaWiki fetch and JSON decoding": 8,
        "HTTP and KServe": 2,
        "building and pickling the job, collecting the result": 1,
    }
    assert samples.counts[WORKER] == {"scoring": 4, "extraction": 6}
    assert samples.share(WORKER, "extraction") == 0.6


def test_a_process_waiting_for_input_is_not_counted():
    # The event loop in C (uvloop) shows as its Python caller; a worker reads its pipe while idle.
    samples = parse_raw(
        stacks(
            (LOOP, 7),
            (f"{WORKER_START};_ConnectionBase.recv_bytes (multiprocessing/connection.py:216);"
             "Connection._recv (multiprocessing/connection.py:379)", 9),
            (f"{LOOP};RequestGuard.__call__ (wikiserve/server.py:125)", 1),
        ),
        SERVER_PID,
    )
    assert samples.waiting == 16
    assert samples.counts[SERVER] == {"HTTP and KServe": 1} and not samples.counts[WORKER]
