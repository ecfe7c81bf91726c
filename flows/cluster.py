"""Chunks computed on a Dask cluster (`[warehouse] executor = "dask"`).

Each chunk is a task submitted through Prefect's Dask task runner (`prefect_dask`): a worker
reads its part of the lake by path (a folder every worker sees, or an object-storage URL),
computes its rows of every view, and writes them as Parquet parts into a folder the building
process reads. The building process alone appends the parts to the staged warehouse, in chunk
order, as each chunk finishes: DuckDB has one writer, and the warehouse is the one the local
executor builds (the same function computes a chunk on either executor).

The cluster is the scheduler at `[warehouse] dask_address`, or a local cluster of
`dask_workers` processes of one thread each, started for the build and stopped after it
(polars already uses every core of a process; one thread per worker keeps each worker to
one chunk's memory).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from flows.config import WarehouseSettings

# How long the build waits for the scheduler at `dask_address` to accept a connection.
SCHEDULER_CONNECT_SECONDS: Final = 10.0
PARTS_SUFFIX: Final = ".parts"


class ClusterUnreachableError(RuntimeError):
    """No Dask scheduler answers at `[warehouse] dask_address`; one line saying what to do."""


def check_cluster(settings: WarehouseSettings) -> None:
    """Refuse, in one line, a `dask_address` where nothing accepts a connection, before the
    build reads the lake: it would otherwise wait for the Dask client's own timeout and fail
    with a traceback after the estate's first steps."""
    if settings.executor != "dask" or settings.dask_address is None:
        return
    address = settings.dask_address
    parsed = urlparse(address)
    try:
        with socket.create_connection(
            (parsed.hostname or "", parsed.port or 0), timeout=SCHEDULER_CONNECT_SECONDS
        ):
            return
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ClusterUnreachableError(
            f"[warehouse] dask_address {address}: no Dask scheduler answers there ({reason}); "
            "start one (`dask scheduler`, with workers that can import mdecost and read the "
            'lake), or leave dask_address out to start a local cluster, or set executor = "local"'
        ) from None


def task_runner(settings: WarehouseSettings) -> Any:
    """Prefect's Dask task runner for `settings`: the existing scheduler at `dask_address`, else
    a local cluster of `dask_workers` processes (one per core by default), one thread each, its
    dashboard on a free loopback port (the fixed default would collide with another build's)."""
    from prefect_dask import DaskTaskRunner  # here: only a dask build pays for importing Dask

    if settings.dask_address is not None:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": settings.dask_workers or os.cpu_count() or 1,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": "127.0.0.1:0",
            "env": {"PREFECT_API_URL": _prefect_api_url(), "DASK_LOGGING__DISTRIBUTED": "warning"},
        }
    )


def _prefect_api_url() -> str:
    """The Prefect API this process reports to (the temporary server a command starts
    included), for the local cluster's workers: without it each worker would start a temporary
    server of its own (about 10 s each), and its task runs would not reach the build's."""
    from prefect.client.orchestration import get_client

    return str(get_client(sync_client=True).api_url)


def run_in_order(
    settings: WarehouseSettings,
    task: Any,
    parameters: Sequence[dict[str, Any]],
    receive: Callable[[int, Any], None],
) -> None:
    """Submit `task` once per entry of `parameters` to the cluster, all at once, and hand each
    result to `receive` in submission order, as soon as it and the ones before it are done:
    the building process appends chunk 1 while the workers compute the next ones."""
    with quiet_dask(), task_runner(settings) as runner:
        futures = [runner.submit(task, parameters=given) for given in parameters]
        for index, future in enumerate(futures):
            receive(index, future.result())


@contextmanager
def quiet_dask() -> Iterator[None]:
    """Dask's own INFO lines (some thirty per build: scheduler, nannies, connections) kept off
    the build's output while the cluster runs; its warnings and errors still show."""
    import distributed  # noqa: F401 (sets its loggers' levels when first imported)

    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def parts_folder(settings: WarehouseSettings) -> Iterator[Path]:
    """A new folder for one build's chunk parts (in `parts_path`, else beside the warehouse),
    removed when the build ends, however it ends."""
    parent = settings.parts_path or settings.path.parent
    folder = parent / f".{settings.path.name}.{uuid.uuid4().hex}{PARTS_SUFFIX}"
    folder.mkdir(mode=0o700, parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sweep_abandoned_parts(settings: WarehouseSettings) -> list[Path]:
    """Delete parts folders a killed build left; call under the build lock."""
    parent = settings.parts_path or settings.path.parent
    abandoned = sorted(parent.glob(f".{settings.path.name}.*{PARTS_SUFFIX}"))
    for folder in abandoned:
        shutil.rmtree(folder, ignore_errors=True)
    return abandoned


def write_part(folder: Path, chunk_number: int, view: str, table: pa.Table) -> Path:
    """One chunk's rows of one view as a Parquet file in `folder`: Parquet keeps the Arrow types,
    so the building process appends the types the local executor would
    (`StagedWarehouse.append_part`)."""
    path = folder / f"{chunk_number:06d}.{view}.parquet"
    pq.write_table(table, path, compression="zstd")
    return path
