"""iter_batches: a DataLoader for plain numpy, decoding samples on a few threads."""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Callable, Iterable, Iterator, Optional

from .dataset import DcbsDataset, collate

__all__ = ["iter_batches"]


def iter_batches(dataset: DcbsDataset, batch_size: int = 1, *,
                 indices: Optional[Iterable[int]] = None, threads: int = 2, prefetch: int = 2,
                 collate_fn: Callable = collate) -> Iterator:
    """Batches of ``dataset`` samples (``indices`` in order, default all), each sample decoded
    on one of ``threads`` threads while up to ``prefetch`` batches are under way.

    Decoding releases the GIL, so the threads use the cores as worker processes would,
    without a second copy of the data. ``collate_fn`` makes a batch from a list of samples
    (default :func:`dicube.data.collate`, which stacks the images into a new array).
    """
    if batch_size < 1 or threads < 1 or prefetch < 1:
        raise ValueError("batch_size, threads and prefetch must be at least 1")
    order = iter(range(len(dataset)) if indices is None else indices)
    batches = iter(lambda: list(islice(order, batch_size)), [])
    with ThreadPoolExecutor(threads) as pool:
        pending: deque = deque()

        def submit(n: int) -> None:
            for b in islice(batches, n):
                pending.append([pool.submit(dataset.sample, i, 1) for i in b])

        submit(prefetch)
        while pending:
            futures = pending.popleft()
            submit(1)
            yield collate_fn([f.result() for f in futures])
