"""Dask clusters for GeoRSIC: a local one started on demand, or an existing one by address.

Workers run GeoRSIC tasks (tiles of one raster, or whole files of a batch) and read inputs by
path, so they must share the file system with the client and have GeoRSIC and its weights
installed.  A worker that dies loses nothing: the scheduler runs its tasks again elsewhere and
every output is written by one process, through a temporary file renamed when complete.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from georsic.errors import GeorsicError
from georsic.parallel import cores

#: The environment of a local cluster's worker processes: Dask's own, less its
#: ``MALLOC_TRIM_THRESHOLD_=65536``, which (setting it turns off glibc's adaptive mmap
#: threshold) made a worker map and unmap every large tensor: tile coding took 1.42x the
#: in-process time with it, 0.90x without it and the profiler (docs/scale.md).
WORKER_ENV = {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}


def local_cluster(workers: int, dashboard: str | None = ":0", **options):
    """A ``distributed.LocalCluster`` of ``workers`` processes of one thread each, set up for
    tile coding: no malloc trim threshold and no statistical profiler on the workers (the
    profiler samples the compute thread every 10 ms; off, a tile coded 7-17 % faster)."""
    import dask
    from distributed import LocalCluster

    # a Nanny copies its environment into this process's before spawning: an earlier
    # cluster's MALLOC_TRIM_THRESHOLD_ would reach the new workers through it
    if os.environ.get("MALLOC_TRIM_THRESHOLD_") == "65536":
        del os.environ["MALLOC_TRIM_THRESHOLD_"]
    settings = {"distributed.nanny.pre-spawn-environ": WORKER_ENV,
                "distributed.worker.profile.enabled": False}
    with dask.config.set(settings):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            dashboard_address=dashboard, **options)


class ClusterError(GeorsicError):
    """No Dask cluster could be started or reached."""

    exit_code = 1


@contextlib.contextmanager
def connect(workers: int | None = None, scheduler: str | None = None, *,
            quiet: bool = False, dashboard: str = ":0") -> Iterator[object | None]:
    """A ``distributed.Client`` for the run, or None (in-process) when neither is given.

    ``workers``: start a local cluster of that many worker processes of one thread each
    (0 or fewer: one per core), and print its dashboard address on stderr.  ``scheduler``:
    connect to a running scheduler, e.g. ``tcp://10.0.0.5:8786``.  The local cluster is shut
    down on leaving; an existing one is left running.
    """
    if workers is None and scheduler is None:
        yield None
        return
    if workers is not None and scheduler is not None:
        raise ClusterError("give either --workers (a local cluster) or --scheduler (an "
                           "existing one), not both")
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError("dask.distributed is not installed; run scripts/setup.sh or "
                           "pip install 'dask[distributed]'") from None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: "
                               f"{' '.join(str(exc).split())}") from None
        with client:
            yield client
        return
    count = workers if workers and workers > 0 else cores()
    cluster = local_cluster(count, dashboard)
    with cluster, Client(cluster) as client:
        if not quiet:
            print(f"georsic: local Dask cluster of {count} worker(s), dashboard "
                  f"{client.dashboard_link}", file=sys.stderr)
        yield client
