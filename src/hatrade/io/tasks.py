"""Independent tasks on a Dask cluster: the runner shared by batches and calibration grids.

:func:`dask_client` opens a client (a ``LocalCluster`` of single-threaded workers, or a
running scheduler) and closes it with its cluster; :func:`completed_rows` yields the
result rows of submitted tasks as they finish, a failed task giving a failure row so that
the others go on. Dask is optional (``pip install 'dask[distributed]'``):
:func:`dask_available` and :func:`need_dask` say so clearly.
"""

from __future__ import annotations

import contextlib
import os

from hatrade.core.params import ParameterError

__all__ = ["dask_available", "dask_missing", "need_dask", "completed_rows", "dask_client"]


def dask_available() -> bool:
    """Whether ``dask.distributed`` can be imported."""
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        return False
    return True


def dask_missing(what: str = "runs on a Dask cluster") -> str:
    """The message for a missing ``dask.distributed`` (what to install, or run serially)."""
    return (
        f"{what} need dask.distributed, which is not installed: pip install "
        "'dask[distributed]' (or the hatrade extra 'batch'), or run serially "
        "(executor='serial', CLI --serial)."
    )


def need_dask(error: type[Exception] = ParameterError, what: str = "runs on a Dask cluster"):
    """Raise ``error`` (:func:`dask_missing`) when ``dask.distributed`` is missing."""
    if not dask_available():
        raise error(dask_missing(what))


def completed_rows(futures, items, failed_row):
    """The result rows of Dask ``futures`` (one per ``items`` entry), in completion order.

    A future that raises (worker died, unpicklable result, ...) gives
    ``failed_row(item, "<ExceptionType>: <message>")`` instead, so one failure never stops
    the others.
    """
    from dask.distributed import as_completed

    by_key = {f.key: it for f, it in zip(futures, items)}
    for fut in as_completed(futures):
        item = by_key[fut.key]
        try:
            row = fut.result()
        except Exception as err:  # worker died, unpicklable result, ...
            row = failed_row(item, f"{type(err).__name__}: {err}")
        yield row


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None,
    workers: int | None = None,
    n_tasks: int = 1,
    *,
    processes: bool = True,
    error: type[Exception] = ParameterError,
):
    """A Dask client for independent tasks, closed (with its cluster) on exit.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``); None starts a
        ``LocalCluster`` of ``workers`` single-threaded workers (default: half the cores),
        never more than ``n_tasks``.
    processes : bool
        Local workers as processes (True) or threads.
    error : exception class raised when the scheduler cannot be reached.
    """
    need_dask(error)
    from dask.distributed import Client, LocalCluster

    cluster = None
    if scheduler is None:
        n = max(1, min(int(workers or max(1, (os.cpu_count() or 2) // 2)), int(n_tasks)))
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=processes, dashboard_address=None
        )
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as err:
            raise error(f"cannot connect to the Dask scheduler at {scheduler}: {err}") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
