"""The one seam through which CPU-bound work (feature extraction and scoring) leaves the event loop.

Today it is the loop's default thread pool; a process pool can replace it without touching the model,
because the work is a picklable function of plain data (`scoring.score_revision_models(RevisionJob)`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class OffLoopExecutor:
    """Runs functions in `executor` (None: the event loop's default thread pool)."""

    def __init__(self, executor: Executor | None = None) -> None:
        self.executor = executor

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    def may_run_here(self, job: Any) -> bool:
        """Whether `job` may run in the caller's own thread when nothing else is being served. Not with a
        thread pool: revscoring's native dependencies are not safe in two threads at once."""
        return False

    def is_heavy(self, job: Any) -> bool:
        """Whether `job` goes to a low-priority lane of its own (a thread pool has none)."""
        return False

    def heavy_lane_full(self) -> bool:
        """Whether a heavy job would be refused now."""
        return False

    def heavy_refusal(self) -> Exception:
        """The error a refused heavy job answers with."""
        raise NotImplementedError("a thread pool has no heavy lane")


def one_thread() -> OffLoopExecutor:
    """Extraction in ONE thread of the server process (EXTRACTION_WORKERS=0): revscoring's native
    dependencies are not safe in two threads at once (the loop's default pool, with several threads,
    crashed the process with SIGSEGV at concurrency 8)."""
    return OffLoopExecutor(ThreadPoolExecutor(1, thread_name_prefix="extraction"))
