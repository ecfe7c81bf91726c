"""The Parquet lake: one folder per dataset, one file per partition, each replaced atomically.

A partition (for example power events of one subscription for one month) is a single Parquet
file. It is written beside its final name and moved into place with `os.replace`, which is
atomic on POSIX file systems: a reader sees the old file or the new one, a crash leaves the old
one, and a re-run replaces rather than appends, so nothing is ever counted twice.

One writing run at a time (`lake_lock`): two collections of the same month would each read the
partition, merge and replace it, and the second replace would drop what the first merged in.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from flows.locks import held_exclusively
from transforms.schemas import DATASETS, conform

PARTITION_FILE = "data.parquet"
LOCK_FILE = ".lock"
# How long a second collect waits for the first before it stops and says so.
LAKE_LOCK_WAIT_SECONDS = 30.0
# Whole value (fullmatch): `$` alone would let a trailing newline into a folder name.
_PARTITION_VALUE = re.compile(r"[A-Za-z0-9._-]+")


class LakeBusyError(RuntimeError):
    """Another run holds the lake lock for longer than we were willing to wait."""


def lake_lock(lake: Path, wait_seconds: float | None = None) -> AbstractContextManager[None]:
    """Hold `<lake>/.lock` exclusively while a run writes the lake.

    Waits up to `wait_seconds` (default `LAKE_LOCK_WAIT_SECONDS`), then raises `LakeBusyError`
    naming the lock file. Readers (`build`, reports) need no lock: every partition is replaced
    atomically, so they read each one whole, old or new.
    """
    return held_exclusively(
        lake / LOCK_FILE,
        LAKE_LOCK_WAIT_SECONDS if wait_seconds is None else wait_seconds,
        LakeBusyError,
        holders="collect or cost import",
    )


def partition_path(lake: Path, dataset: str, partition: Mapping[str, str]) -> Path:
    """`<lake>/raw/<dataset>/<key>=<value>/.../data.parquet` for a Hive-style partition."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown lake dataset {dataset!r}; known: {', '.join(DATASETS)}")
    folder = lake / "raw" / dataset
    for key, value in partition.items():
        if not _PARTITION_VALUE.fullmatch(value) or value in {".", ".."}:
            raise ValueError(
                f"partition value {key}={value!r} must match {_PARTITION_VALUE.pattern}"
            )
        folder = folder / f"{key}={value}"
    return folder / PARTITION_FILE


def write_partition(
    lake: Path, dataset: str, partition: Mapping[str, str], table: pa.Table, origin: str
) -> Path:
    """Replace one partition of `dataset` with `table`, atomically; returns the file written.

    The table is checked against the dataset's declared schema first (`origin` names where it
    came from in the error). An empty table still replaces the partition: a month that now has
    no rows must not keep yesterday's.
    """
    conformed = conform(table, dataset, origin)
    target = partition_path(lake, dataset, partition)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(conformed, staging, compression="zstd")
        with staging.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    fsync_directory(target.parent)
    return target


def fsync_directory(folder: Path) -> None:
    """Make a rename into `folder` durable (the folder's entry, not only the file's data)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def dataset_files(lake: Path, dataset: str) -> list[Path]:
    """Every committed partition file of `dataset` (staging files start with a dot: excluded)."""
    return sorted((lake / "raw" / dataset).glob(f"**/{PARTITION_FILE}"))


def partition_value(path: Path, key: str) -> str | None:
    """The value of partition `key` in a partition file's path (None: not partitioned by it)."""
    prefix = f"{key}="
    return next(
        (part.removeprefix(prefix) for part in path.parent.parts if part.startswith(prefix)), None
    )


def scan_dataset(lake: Path, dataset: str) -> pl.LazyFrame:
    """A lazy scan of every partition of `dataset`, typed by its declared schema.

    Partition keys are folder names only; the columns come from the files, so a dataset reads
    the same whichever way it was partitioned. A dataset with no partitions yet is an empty frame
    with the right columns, so transforms need no special case.
    """
    return scan_files(dataset, dataset_files(lake, dataset))


def scan_files(dataset: str, files: list[Path], *, with_file: str | None = None) -> pl.LazyFrame:
    """A lazy scan of some partition files of `dataset`, typed by its declared schema; with
    `with_file`, each row's file path (as `str(path)`) in that column.

    A nullable column added to a dataset after a partition was written reads as null there
    (`missing_columns="insert"`), so a lake collected by an older mdecost keeps building.
    """
    schema = pl.DataFrame(DATASETS[dataset].empty_table()).schema
    if not files:
        empty = pl.LazyFrame(schema=schema)
        return empty.with_columns(pl.lit(None, pl.String).alias(with_file)) if with_file else empty
    return pl.scan_parquet(
        files,
        schema=schema,
        hive_partitioning=False,
        include_file_paths=with_file,
        missing_columns="insert",
    )
