"""A small process-pool map with a progress bar, shared by data generation and caching."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any


def progress_map(
    func: Callable[[Any], Any],
    jobs: Sequence,
    workers: int = 1,
    desc: str = "",
    progress: bool = False,
    chunksize: int = 4,
    min_parallel: int = 1,
) -> list:
    """``[func(j) for j in jobs]`` in order, on ``workers`` spawned processes when ``workers > 1``.

    Args:
        func: a picklable top-level function of one argument.
        jobs: its arguments.
        workers: process count (1: run in this process).
        desc: progress-bar label. progress: show a tqdm bar.
        chunksize: jobs per task sent to a worker.
        min_parallel: below this many jobs, run in this process even when ``workers > 1``.
    """
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=desc, disable=not progress)
    out: list = []
    try:
        if workers > 1 and len(jobs) >= min_parallel:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for item in pool.imap(func, jobs, chunksize=chunksize):
                    out.append(item)
                    bar.update()
        else:
            for job in jobs:
                out.append(func(job))
                bar.update()
    finally:
        bar.close()
    return out
