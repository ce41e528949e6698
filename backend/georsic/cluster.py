"""Dask clusters for GeoRSIC: a local one started on demand, or an existing one by address.

Workers run GeoRSIC tasks (tiles of one raster, or whole files of a batch) and read inputs by
path, so they must share the file system with the client and have GeoRSIC and its weights
installed.  A worker that dies loses nothing: the scheduler runs its tasks again elsewhere and
every output is written by one process, through a temporary file renamed when complete.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator

from georsic.errors import GeorsicError
from georsic.parallel import cores

#: Seconds to reach a scheduler and hear it answer as one (``--connect-timeout``; the
#: environment variable ``GEORSIC_CONNECT_TIMEOUT`` changes the default).
CONNECT_TIMEOUT = 10.0
#: The loggers of Dask kept at WARNING unless ``debug`` (their INFO lines are for Dask's own
#: debugging: worker start-up, nanny messages, the dashboard's proxy hint).
DASK_LOGGERS = ("distributed", "dask", "bokeh", "tornado")

#: The environment of a local cluster's worker processes: Dask's own, less its
#: ``MALLOC_TRIM_THRESHOLD_=65536``, which (setting it turns off glibc's adaptive mmap
#: threshold) made a worker map and unmap every large tensor: tile coding took 1.42x the
#: in-process time with it, 0.90x without it and the profiler (docs/scale.md).
WORKER_ENV = {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}
#: What a worker process runs on start-up: :func:`dask_setup` below.
WORKER_PRELOAD = "georsic.cluster"


def dask_setup(worker=None) -> None:
    """Run by each local worker process as it starts (Dask's preload): Ctrl-C reaches the
    whole process group, but stopping the workers is the client's job (it closes the
    cluster), so a worker ignores SIGINT instead of printing its tasks' tracebacks.  Only in a
    worker process of its own (one a Nanny spawned): a worker in the caller's process leaves
    the caller's Ctrl-C alone (an ignored SIGINT would also pass to every program it runs)."""
    import multiprocessing
    import threading

    own_process = multiprocessing.parent_process() is not None
    if own_process and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def quiet_dask(debug: bool = False, quiet: bool = False) -> dict:
    """Dask's and distributed's loggers at WARNING here (ERROR when ``quiet``: "worker still
    alive after 4 s, killing" is no news to the user) unless ``debug``; returns the
    environment of a local worker process, whose loggers say errors only (a task cancelled
    by an interrupt is a warning there)."""
    if debug:
        return {}
    level = logging.ERROR if quiet else logging.WARNING
    for name in DASK_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < level:
            logger.setLevel(level)
    return {"DASK_LOGGING__DISTRIBUTED": "error"}


def local_cluster(workers: int, dashboard: str | None = ":0", *, debug: bool = False,
                  quiet: bool = False, **options):
    """A ``distributed.LocalCluster`` of ``workers`` processes of one thread each, set up for
    tile coding: no malloc trim threshold and no statistical profiler on the workers (the
    profiler samples the compute thread every 10 ms; off, a tile coded 7-17 % faster).  Its
    workers ignore SIGINT (:func:`dask_setup`) and log warnings only (errors only when
    ``quiet``) unless ``debug``."""
    import dask
    from distributed import LocalCluster

    # a Nanny copies its environment into this process's before spawning: an earlier
    # cluster's MALLOC_TRIM_THRESHOLD_ would reach the new workers through it
    if os.environ.get("MALLOC_TRIM_THRESHOLD_") == "65536":
        del os.environ["MALLOC_TRIM_THRESHOLD_"]
    settings = {"distributed.nanny.pre-spawn-environ": {**WORKER_ENV,
                                                           **quiet_dask(debug, quiet)},
                "distributed.worker.profile.enabled": False,
                "distributed.worker.preload": [WORKER_PRELOAD]}
    with dask.config.set(settings):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            dashboard_address=dashboard, **options)


class ClusterError(GeorsicError):
    """No Dask cluster could be started or reached."""

    exit_code = 1


class SchedulerError(ClusterError):
    """The scheduler address is malformed, unreachable or not a Dask scheduler's."""

    exit_code = 2


def check_workers(workers: int | None) -> int | None:
    """``workers`` (None, or a whole number of at least 1), or a one-line :class:`InputError`
    (``--workers`` with no number is resolved to one per core before)."""
    from georsic.errors import InputError

    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise InputError(f"--workers takes a whole number of at least 1, not {workers!r} "
                         "(leave the number out for one worker per core)")
    return workers


def check_scheduler(address: str) -> str:
    """``address`` if it reads as a Dask scheduler address (``tcp://HOST:PORT``, ``HOST:PORT``
    or ``tls://HOST:PORT`` with Dask's TLS settings), else a one-line :class:`SchedulerError`;
    nothing is contacted."""
    from distributed.comm.addressing import parse_address, parse_host_port

    shown = repr(address) if not address.strip() else address
    try:
        scheme, location = parse_address(address)
        host, port = parse_host_port(location) if scheme in ("tcp", "tls") else (None, None)
    except (ValueError, TypeError) as exc:
        raise SchedulerError(f"--scheduler {shown} is not a scheduler address ({exc}); give "
                             "tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786") from None
    if scheme not in ("tcp", "tls"):
        raise SchedulerError(f"--scheduler {shown}: {scheme}:// is not a scheme GeoRSIC "
                             "connects through; give tcp://HOST:PORT (a dashboard's http:// "
                             "address is not the scheduler's)")
    if not host or not 0 < int(port) < 65536:
        raise SchedulerError(f"--scheduler {shown} needs a host and a port from 1 to 65535, "
                             "e.g. tcp://10.0.0.5:8786")
    if scheme == "tls" and _tls_arguments()["ssl_context"] is None:
        raise SchedulerError(f"--scheduler {shown}: tls:// needs Dask's TLS settings "
                             "(distributed.comm.tls.ca-file, .client.cert and .client.key in "
                             "the Dask configuration); none are set")
    return address


def _tls_arguments() -> dict:
    from distributed.security import Security

    return Security().get_connection_args("client")


def connect_timeout(timeout: float | None = None) -> float:
    """``timeout`` seconds, or ``GEORSIC_CONNECT_TIMEOUT``, or :data:`CONNECT_TIMEOUT`."""
    from georsic.errors import InputError

    if timeout is None:
        text = os.environ.get("GEORSIC_CONNECT_TIMEOUT", "")
        try:
            timeout = float(text) if text else CONNECT_TIMEOUT
        except ValueError:
            raise InputError(f"GEORSIC_CONNECT_TIMEOUT must be a number of seconds, not "
                             f"{text!r}") from None
    if not (0 < timeout < float("inf")):
        raise InputError(f"the connect timeout must be a positive number of seconds, not "
                         f"{timeout}")
    return float(timeout)


def probe_scheduler(address: str, timeout: float) -> dict:
    """The identity of the scheduler at ``address`` (checked with :func:`check_scheduler`),
    asked for within ``timeout`` seconds in all; a one-line :class:`SchedulerError` when
    nothing listens there, nothing answers in time (an HTTP server waits for a request line
    that never comes) or what answers is not a Dask scheduler."""
    import asyncio

    check_scheduler(address)
    _reachable(address, timeout)

    async def identity() -> object:
        from distributed.comm import connect as comm_connect

        options = _tls_arguments() if address.startswith("tls://") else {}
        comm = await comm_connect(address, timeout=timeout, **options)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    try:
        reply = asyncio.run(asyncio.wait_for(identity(), timeout))
    except (asyncio.TimeoutError, TimeoutError):
        raise SchedulerError(f"--scheduler {address}: no answer within {timeout:g} s (is it "
                             "the dashboard's port? a scheduler's is usually 8786)") from None
    except OSError as exc:
        raise SchedulerError(f"cannot reach the Dask scheduler at {address}: "
                             f"{' '.join(str(exc).split())[:200]}") from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: BLE001 - garbage read as a frame length, a bad handshake
        reply = None
    if not isinstance(reply, dict) or reply.get("type") != "Scheduler":
        raise SchedulerError(f"--scheduler {address} answered, but not as a Dask scheduler "
                             "(is it the dashboard's port? a scheduler's is usually 8786)")
    return reply


def _reachable(address: str, timeout: float) -> None:
    """A one-line :class:`SchedulerError` at once when nothing listens at ``address``
    (distributed's own connect retries a refused connection until its timeout, which would
    then read as a silent server)."""
    import socket

    from distributed.comm.addressing import get_address_host_port

    host, port = get_address_host_port(address)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except TimeoutError:
        return  # the identity request below names it
    except OSError as exc:
        raise SchedulerError(f"cannot reach the Dask scheduler at {address}: "
                             f"{' '.join(str(exc).split())[:200]}") from None


@contextlib.contextmanager
def connect(workers: int | None = None, scheduler: str | None = None, *,
            quiet: bool = False, dashboard: str = ":0", debug: bool = False,
            timeout: float | None = None) -> Iterator[object | None]:
    """A ``distributed.Client`` for the run, or None (in-process) when neither is given.

    ``workers``: start a local cluster of that many worker processes of one thread each
    (at least 1; 0 means one per core), and print its dashboard address on stderr unless
    ``quiet``.  ``scheduler``: connect to a running scheduler, e.g. ``tcp://10.0.0.5:8786``,
    within ``timeout`` seconds (:func:`connect_timeout`).  Dask logs warnings only (errors
    only when ``quiet``) unless ``debug``.  The local cluster is shut down on leaving; an
    existing one is left running.
    """
    if workers is None and scheduler is None:
        yield None
        return
    if workers is not None and scheduler is not None:
        raise ClusterError("give either --workers (a local cluster) or --scheduler (an "
                           "existing one), not both")
    if workers is not None and workers != 0:
        check_workers(workers)
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError("dask.distributed is not installed; run scripts/setup.sh or "
                           "pip install 'dask[distributed]'") from None
    quiet_dask(debug, quiet)
    if scheduler is not None:
        seconds = connect_timeout(timeout)
        probe_scheduler(scheduler, seconds)
        try:
            client = Client(scheduler, timeout=f"{seconds}s")
        except (OSError, TimeoutError) as exc:
            raise SchedulerError(f"cannot reach the Dask scheduler at {scheduler}: "
                                 f"{' '.join(str(exc).split())[:200]}") from None
        with client:
            yield client
        return
    count = workers if workers else cores()
    cluster = local_cluster(count, dashboard, debug=debug, quiet=quiet)
    with cluster, Client(cluster) as client:
        if not quiet:
            print(f"georsic: local Dask cluster of {count} worker(s), dashboard "
                  f"{client.dashboard_link}", file=sys.stderr)
        try:
            yield client
        except KeyboardInterrupt:
            # the cluster closes with its tasks cancelled: what it says of them is no news
            quiet_dask(debug, quiet=True)
            raise
