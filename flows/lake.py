"""The Parquet lake: one folder per dataset, one file per partition, each replaced atomically.

A partition (for example power events of one subscription for one month) is a single Parquet
file. It is written beside its final name and moved into place with `os.replace`, which is
atomic on POSIX file systems: a reader sees the old file or the new one, a crash leaves the old
one, and a re-run replaces rather than appends, so nothing is ever counted twice.

One writing run at a time (`lake_lock`): two collections of the same month would each read the
partition, merge and replace it, and the second replace would drop what the first merged in.

A lake may also be read from Azure Blob Storage or ADLS Gen2 (`ObjectStoreLake`, `[lake] path =
"abfs://container/folder"`): the same folders uploaded as they are, read by `build` (locally
or on Dask workers) through fsspec's `adlfs` (listing, file facts) and polars' own object-store
reader (scans). Writing (collect, imports, price refreshes) needs the local file system's atomic
rename and lock file, so those commands refuse an object-storage lake (`LakeSettings.folder`).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, Final, cast, overload
from urllib.parse import urlparse

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


# URL schemes of a lake in Azure Blob Storage / ADLS Gen2 (fsspec's adlfs and polars read all).
OBJECT_STORE_SCHEMES: Final = ("abfs", "abfss", "az")
# The standard variables Azure's tools read a storage credential from.
CONNECTION_STRING_VARIABLE: Final = "AZURE_STORAGE_CONNECTION_STRING"
ACCOUNT_NAME_VARIABLE: Final = "AZURE_STORAGE_ACCOUNT_NAME"
ACCOUNT_KEY_VARIABLE: Final = "AZURE_STORAGE_ACCOUNT_KEY"
SAS_TOKEN_VARIABLE: Final = "AZURE_STORAGE_SAS_TOKEN"


class ObjectStoreCredentialError(RuntimeError):
    """An object-storage lake's credential is missing; one line naming what to set."""


@dataclass(frozen=True)
class ObjectStoreLake:
    """A lake in an Azure storage container: `url` is `abfs://<container>/<folder>` (or az://,
    abfss://), the lake's folders below it as on disk.

    It holds no secret: each process that reads the lake (the building one, each Dask worker)
    takes the credential from its own environment, in this order: the connection string (account
    key or SAS) in the variable named by `connection_string_env`, else in
    AZURE_STORAGE_CONNECTION_STRING; else the account (`account_name`, else
    AZURE_STORAGE_ACCOUNT_NAME) with AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN, else
    with an Entra identity (the environment's service principal or a managed identity; Storage
    Blob Data Reader on the container).
    """

    url: str
    account_name: str | None = None
    connection_string_env: str | None = None

    def __str__(self) -> str:
        return self.url

    @property
    def scheme(self) -> str:
        return urlparse(self.url).scheme

    @property
    def root(self) -> PurePosixPath:
        """The lake's folder as fsspec names it: `<container>/<folder>`."""
        parsed = urlparse(self.url)
        return PurePosixPath(parsed.netloc + parsed.path)

    def source(self, path: PurePath) -> str:
        """`path` (as listed, `<container>/...`) as the URL polars reads."""
        return f"{self.scheme}://{path}"

    def _connection(self) -> dict[str, str]:
        """The connection string's fields (AccountName, AccountKey, BlobEndpoint, ...), or {}."""
        variable = self.connection_string_env or CONNECTION_STRING_VARIABLE
        text = os.environ.get(variable, "")
        if self.connection_string_env and not text:
            raise ObjectStoreCredentialError(
                f"[lake] connection_string_env names {variable}, which is not set in this "
                "process's environment (on a Dask cluster: in every worker's)"
            )
        fields = (item.partition("=") for item in text.split(";") if item.strip())
        return {key.strip(): value for key, _, value in fields}

    def _account(self) -> str:
        account = self.account_name or os.environ.get(ACCOUNT_NAME_VARIABLE)
        if not account:
            raise ObjectStoreCredentialError(
                f"the lake {self.url} needs a storage account: set [lake] account_name (or "
                f"{ACCOUNT_NAME_VARIABLE}), or a connection string in "
                f"{CONNECTION_STRING_VARIABLE} or the variable [lake] connection_string_env names"
            )
        return account

    def filesystem(self) -> Any:
        """The container as an fsspec file system (adlfs)."""
        from adlfs import AzureBlobFileSystem

        connection = self._connection()
        if connection:
            variable = self.connection_string_env or CONNECTION_STRING_VARIABLE
            return AzureBlobFileSystem(connection_string=os.environ[variable])
        account = self._account()
        if os.environ.get(ACCOUNT_KEY_VARIABLE):
            return AzureBlobFileSystem(
                account_name=account, account_key=os.environ[ACCOUNT_KEY_VARIABLE]
            )
        if os.environ.get(SAS_TOKEN_VARIABLE):
            return AzureBlobFileSystem(
                account_name=account, sas_token=os.environ[SAS_TOKEN_VARIABLE]
            )
        return AzureBlobFileSystem(account_name=account, anon=False)

    def storage_options(self) -> dict[str, str]:
        """The same credential as polars' object-store reader takes it."""
        connection = self._connection()
        if connection:
            options = {"account_name": connection.get("AccountName", "")}
            if connection.get("AccountKey"):
                options["account_key"] = connection["AccountKey"]
            if connection.get("SharedAccessSignature"):
                options["sas_token"] = connection["SharedAccessSignature"]
            endpoint = connection.get("BlobEndpoint")
            if endpoint:  # an emulator (Azurite) or a custom domain
                options["endpoint"] = endpoint.rstrip("/")
                if endpoint.startswith("http://"):
                    options["allow_http"] = "true"
            return options
        options = {"account_name": self._account()}
        if os.environ.get(ACCOUNT_KEY_VARIABLE):
            options["account_key"] = os.environ[ACCOUNT_KEY_VARIABLE]
        elif os.environ.get(SAS_TOKEN_VARIABLE):
            options["sas_token"] = os.environ[SAS_TOKEN_VARIABLE]
        return options

    def listing(self, dataset: str) -> dict[PurePosixPath, tuple[int, str]]:
        """Every committed partition file of `dataset` with its size and version (ETag): one
        listing of the dataset's folder, no request per file."""
        folder = self.root / "raw" / dataset
        found = self.filesystem().find(str(folder), detail=True)
        return {
            PurePosixPath(name): (int(info["size"]), str(info.get("etag") or ""))
            for name, info in sorted(found.items())
            if PurePosixPath(name).name == PARTITION_FILE
        }

    def exists(self) -> bool:
        return bool(self.filesystem().exists(str(self.root)))

    def read_schema(self, path: PurePath) -> pa.Schema:
        with self.filesystem().open(str(path), "rb") as handle:
            return pq.read_schema(handle)


# Where a lake is: a folder on this machine (or one every Dask worker mounts), or a container.
Lake = Path | ObjectStoreLake


@overload
def dataset_files(lake: Path, dataset: str) -> list[Path]: ...
@overload
def dataset_files(lake: ObjectStoreLake, dataset: str) -> list[PurePosixPath]: ...
def dataset_files(lake: Lake, dataset: str) -> list[Path] | list[PurePosixPath]:
    """Every committed partition file of `dataset` (staging files start with a dot: excluded)."""
    if isinstance(lake, ObjectStoreLake):
        return list(lake.listing(dataset))
    return sorted((lake / "raw" / dataset).glob(f"**/{PARTITION_FILE}"))


def partition_value(path: PurePath, key: str) -> str | None:
    """The value of partition `key` in a partition file's path (None: not partitioned by it)."""
    prefix = f"{key}="
    return next(
        (part.removeprefix(prefix) for part in path.parent.parts if part.startswith(prefix)), None
    )


def scan_dataset(lake: Lake, dataset: str) -> pl.LazyFrame:
    """A lazy scan of every partition of `dataset`, typed by its declared schema.

    Partition keys are folder names only; the columns come from the files, so a dataset reads
    the same whichever way it was partitioned. A dataset with no partitions yet is an empty frame
    with the right columns, so transforms need no special case.
    """
    store = lake if isinstance(lake, ObjectStoreLake) else None
    return scan_files(dataset, dataset_files(lake, dataset), store=store)


def scan_files(
    dataset: str,
    files: Sequence[PurePath],
    *,
    with_file: str | None = None,
    store: ObjectStoreLake | None = None,
) -> pl.LazyFrame:
    """A lazy scan of some partition files of `dataset`, typed by its declared schema; with
    `with_file`, each row's file path (as `str(path)`) in that column. Files of an object-store
    lake (`store`) are read through polars' object-store reader.

    A nullable column added to a dataset after a partition was written reads as null there
    (`missing_columns="insert"`), so a lake collected by an older mdecost keeps building.
    """
    schema = pl.DataFrame(DATASETS[dataset].empty_table()).schema
    if not files:
        empty = pl.LazyFrame(schema=schema)
        return empty.with_columns(pl.lit(None, pl.String).alias(with_file)) if with_file else empty
    if store is None:
        return pl.scan_parquet(
            cast(list[Path], list(files)),
            schema=schema,
            hive_partitioning=False,
            include_file_paths=with_file,
            missing_columns="insert",
        )
    scan = pl.scan_parquet(
        [store.source(path) for path in files],
        schema=schema,
        hive_partitioning=False,
        include_file_paths=with_file,
        missing_columns="insert",
        storage_options=store.storage_options(),
    )
    if with_file is None:
        return scan
    # The path as listed (`<container>/...`), the key the build's cost precedence uses.
    return scan.with_columns(pl.col(with_file).str.strip_prefix(f"{store.scheme}://"))
