"""Where tile work runs: inline, on local threads, or on a Dask cluster, with the same bytes.

Every tile is coded with exactly one torch intra-op thread wherever it runs (floating-point
reductions in oneDNN depend on the thread count, and so would the bitstreams).  Parallelism
comes from coding several tiles at once: on a :class:`~concurrent.futures.ThreadPoolExecutor`
in-process (one codec per thread: a shared model gives other bytes when two threads run it at
once), or on the workers of a ``distributed.Client`` (its ``get_executor()``).  One abstraction,
:class:`concurrent.futures.Executor`, serves both; :func:`ordered` hands results back in
submission order with a bounded number of tasks in flight, so the caller (the only writer)
streams them to disk with bounded memory.  On a cluster a task is a block of consecutive tiles
(:func:`tiles_per_task`), so the scheduler's cost is paid once per block.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from georsic.control import Cancel, check_cancel
from georsic.errors import InputError

#: Times a task is retried after it raised (a worker that dies does not count: Dask reruns
#: the tasks it held elsewhere, up to ``distributed.scheduler.allowed-failures`` times).
RETRIES = 2

_local = threading.local()


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_tile_threads(count: int = 1) -> None:
    """Code tiles in this thread with one torch intra-op thread, or ``count`` where
    :func:`tile_threads` gave a tile more.

    Always set, never skipped when ``torch.get_num_threads()`` already says 1: after another
    thread set it, that can report 1 while this thread's OpenMP pool still runs two (measured:
    decoded pixels then differed).
    """
    import torch

    torch.set_num_threads(max(int(count), 1))


def tile_threads(threads: int, tiles: int, invariant: bool) -> tuple[int, int]:
    """(tiles coded at once, threads per tile) for ``threads`` threads and ``tiles`` tiles.

    One thread per tile, except that a raster of fewer tiles than threads gives each tile the
    threads left idle, where a tile's bits do not depend on its thread count (``invariant``:
    :func:`~georsic.codec.thread_invariant`; a one-tile raster on 2 cores then codes
    on both).
    """
    threads = max(int(threads), 1)
    if not invariant or tiles >= threads:
        return threads, 1
    at_once = max(int(tiles), 1)
    return at_once, threads // at_once


@contextlib.contextmanager
def torch_threads(count: int = 1) -> Iterator[None]:
    """Set torch's intra-op threads for the duration, and restore them after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def thread_codec(model_id: str, weights_sha256: str, device: str = "auto", threads: int = 1):
    """The codec of these weights for this thread (loaded once per thread, device and number
    of threads a tile runs on).

    One instance per thread: :class:`~georsic.codec.TileCodec` serialises calls with a lock,
    and two threads running one model at once gave other bytes (measured).  On a Dask worker
    with one thread this is one codec per process.
    """
    from georsic.codec import TileCodec, resolve_device
    from georsic.weights import find_model

    device = resolve_device(device)
    codecs = getattr(_local, "codecs", None)
    if codecs is None:
        codecs = _local.codecs = {}
    key = (weights_sha256, device, threads)
    if key not in codecs:
        codecs[key] = TileCodec(find_model(model_id, weights_sha256), device, threads)
    return codecs[key]


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def local_executor(threads: int) -> Executor | None:
    """A thread pool of ``threads``, kept for the process's lifetime so that each of its
    threads loads a codec once (None for one thread: tasks then run inline, in order)."""
    if threads <= 1:
        return None
    with _POOLS_LOCK:
        if threads not in _POOLS:
            _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="georsic")
        return _POOLS[threads]


def client_executor(client) -> Executor:
    """The ``concurrent.futures`` face of a ``distributed.Client``: tasks are impure (never
    deduplicated) and retried :data:`RETRIES` times."""
    return client.get_executor(pure=False, retries=RETRIES)


def parallelism(client=None, threads: int = 1) -> int:
    """How many tasks can run at once: the cluster's worker threads, or ``threads``."""
    if client is None:
        return max(threads, 1)
    counts = client.nthreads()
    return max(sum(counts.values()), 1)


def in_flight(parallel: int) -> int:
    """How many tasks to keep submitted: enough to keep every slot busy while the writer waits
    on the oldest, few enough to bound the results waiting in memory."""
    return 2 * parallel + 2


#: Most tiles in one cluster task (``tiles_per_task``): 8 tiles of 256 px are about 2 s of
#: coding on one core, against a few ms of scheduling and transfer per task (docs/scale.md).
DEFAULT_TILES_PER_TASK = 8
#: Tasks each worker thread gets at least, when the raster has tiles enough: fewer, larger
#: blocks would leave workers idle at the end of a small raster.
TASKS_PER_SLOT = 4


def check_tiles_per_task(requested) -> int:
    """``requested`` tiles per task, or a one-line :class:`InputError`."""
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
        raise InputError(f"tiles per task must be a whole number of at least 1, not "
                         f"{requested!r}")
    return requested


def tiles_per_task(tiles: int, parallel: int, requested: int | None = None,
                   cluster: bool = True) -> int:
    """Tiles in one task: ``requested`` when given; in-process 1 (a task there is a function
    call); on a cluster :data:`DEFAULT_TILES_PER_TASK`, fewer when that would leave fewer than
    :data:`TASKS_PER_SLOT` tasks per worker thread."""
    if requested is not None:
        return check_tiles_per_task(requested)
    if not cluster:
        return 1
    fair = -(-max(tiles, 1) // (TASKS_PER_SLOT * max(parallel, 1)))
    return max(1, min(DEFAULT_TILES_PER_TASK, fair))


def blocks(indices: Iterable[int], size: int) -> Iterator[tuple[int, ...]]:
    """``indices`` in order, cut into tuples of ``size`` (the last one may be shorter)."""
    block: list[int] = []
    for index in indices:
        block.append(index)
        if len(block) == size:
            yield tuple(block)
            block = []
    if block:
        yield tuple(block)


def ordered(executor: Executor | None, fn: Callable[..., Any], items: Iterable[tuple],
            window: int, cancel: Cancel | None = None) -> Iterator[Any]:
    """``fn(*item)`` for each item, yielded in the order of ``items``.

    At most ``window`` tasks are submitted and not yet yielded, so memory is bounded whatever
    the order in which they finish.  Without an executor each item runs inline when its turn
    comes.  When the consumer stops (an error, a cancel, ``close()``), the tasks still pending
    are cancelled.
    """
    if executor is None:
        for item in items:
            check_cancel(cancel)
            yield fn(*item)
        return
    pending: deque = deque()
    source = iter(items)
    try:
        for item in source:
            pending.append(executor.submit(fn, *item))
            if len(pending) >= window:
                check_cancel(cancel)
                yield pending.popleft().result()
        while pending:
            check_cancel(cancel)
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
