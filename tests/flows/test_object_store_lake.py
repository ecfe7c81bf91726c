"""A lake in Azure Blob Storage (Azurite, on loopback) builds the warehouse of the same lake on
disk, on the local executor and on a local Dask cluster of two workers.

The hand-built January 2026 lake of `test_chunked_build` (its docstring works out every figure)
is written to disk, then uploaded as it is, folder for folder, into a container; `[lake] path`
is `abfs://lake/estate`, and the credential is a connection string in the variable named by
`[lake] connection_string_env` (Azurite's documented development key). The lake's fingerprint
differs (blob ETags, not file times); every other value is the same to the bit.
"""

import os
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient
from typer.testing import CliRunner

from flows.build import BuildRefusedError, LakeFiles, build, lake_fingerprint
from flows.cli import app
from flows.config import ConfigError, load_settings
from tests.flows.collect.test_archive_storage import azurite  # noqa: F401 (a fixture)
from tests.flows.test_chunked_build import (
    ONE_SUBSCRIPTION_PER_CHUNK,
    SEAT_PRICE,
    in_canonical_order,
    tables,
    write_lake,
    write_subscriptions,
)
from tests.flows.test_dask_build import column_types

pytestmark = pytest.mark.slow

CONNECTION_ENV = "MDECOST_TEST_LAKE_CONNECTION"
CONTAINER = "lake"
LAKE_URL = f"abfs://{CONTAINER}/estate"


def upload(lake: Path, connection: str) -> int:
    """Every file of `lake` uploaded below `estate/` in the container; the blobs written."""
    container = ContainerClient.from_connection_string(connection, CONTAINER)
    if not container.exists():
        container.create_container()
    uploaded = 0
    for path in sorted(lake.rglob("*.parquet")):
        name = f"estate/{path.relative_to(lake).as_posix()}"
        container.upload_blob(name, path.read_bytes(), overwrite=True)
        uploaded += 1
    return uploaded


@pytest.fixture(scope="module")
def lakes(azurite, tmp_path_factory):  # noqa: F811 (the fixture imported above)
    _, connection = azurite
    folder = tmp_path_factory.mktemp("object-store")
    lake = folder / "lake"
    write_lake(lake)
    write_subscriptions(lake)
    assert upload(lake, connection) == len(list(lake.rglob("*.parquet")))
    return folder, lake, connection


def build_into(folder: Path, lake: str, name: str, executor: str, connection: str) -> Path:
    """`mdecost build` of `lake` into `folder/<name>.duckdb`, one subscription per chunk."""
    warehouse = folder / f"{name}.duckdb"
    config = folder / f"{name}.toml"
    config.write_text(
        f'[lake]\npath = "{lake}"\nconnection_string_env = "{CONNECTION_ENV}"\n\n'
        f'[warehouse]\npath = "{warehouse}"\nchunk_megabytes = {ONE_SUBSCRIPTION_PER_CHUNK}\n'
        f'executor = "{executor}"\n'
        + ("dask_workers = 2\n" if executor == "dask" else "")
        + f"\n[pricing.seat_prices]\nmde_for_servers = {SEAT_PRICE}\n\n"
        '[report]\ngroup_by = ["subscription", "management_group"]\n'
    )
    env = {**os.environ, CONNECTION_ENV: connection}
    result = CliRunner().invoke(app, ["build", "--config", str(config)], env=env)
    assert result.exit_code == 0, result.output
    return warehouse


def assert_same_warehouse(on_disk: Path, in_storage: Path) -> None:
    assert column_types(on_disk) == column_types(in_storage)
    first, second = tables(on_disk), tables(in_storage)
    assert set(first) == set(second)
    for name in sorted(first):
        one, other = first[name], second[name]
        if name == "build_info":  # built at another time, from files with other versions
            one, other = (frame.drop("built_at", "lake_fingerprint") for frame in (one, other))
        assert in_canonical_order(one).equals(in_canonical_order(other)), name


def test_the_lake_in_blob_storage_lists_the_files_of_the_lake_on_disk(lakes, monkeypatch):
    _, lake, connection = lakes
    monkeypatch.setenv(CONNECTION_ENV, connection)
    monkeypatch.setenv("MDECOST_LAKE__PATH", LAKE_URL)
    monkeypatch.setenv("MDECOST_LAKE__CONNECTION_STRING_ENV", CONNECTION_ENV)
    store = load_settings().lake.location()
    on_disk, in_storage = LakeFiles.of(lake), LakeFiles.of(store)
    for dataset, files in on_disk.by_subscription.items():
        assert {
            subscription: [str(path.relative_to(lake)) for path in paths]
            for subscription, paths in files.items()
        } == {
            subscription: [str(path.relative_to(store.root)) for path in paths]
            for subscription, paths in in_storage.by_subscription[dataset].items()
        }
    assert on_disk.subscription_bytes() == in_storage.subscription_bytes()
    # Uploading one partition again (a new ETag) changes the fingerprint; nothing else does.
    before = lake_fingerprint(store)
    assert lake_fingerprint(store) == before
    upload(lake, connection)
    assert lake_fingerprint(store) != before


def test_the_lake_in_blob_storage_builds_the_warehouse_of_the_lake_on_disk(prefect_harness, lakes):
    folder, lake, connection = lakes
    on_disk = build_into(folder, str(lake), "disk", "local", connection)
    local = build_into(folder, LAKE_URL, "storage-local", "local", connection)
    assert_same_warehouse(on_disk, local)
    dask = build_into(folder, LAKE_URL, "storage-dask", "dask", connection)
    assert_same_warehouse(on_disk, dask)


def test_collect_and_imports_refuse_a_lake_in_object_storage_in_one_line(tmp_path):
    config = tmp_path / "mdecost.toml"
    config.write_text(f'[lake]\npath = "{LAKE_URL}"\n')
    export = tmp_path / "export.csv"
    export.write_text("Date,Cost\n")
    for command in (
        ["collect", "--start", "2026-01-01", "--end", "2026-02-01"],
        ["import-costs", str(export)],
        ["prices", "refresh"],
    ):
        result = CliRunner().invoke(app, [*command, "--config", str(config)])
        assert result.exit_code == 2, result.output
        assert result.output.startswith(
            f"error: [lake] path is the object-storage URL {LAKE_URL}, which only `mdecost "
            "build` reads"
        ), result.output
        assert len(result.output.strip().splitlines()) == 1


def test_a_lake_in_storage_that_cannot_be_read_is_refused_in_one_line(
    prefect_harness, lakes, tmp_path, monkeypatch
):
    _, _, connection = lakes
    monkeypatch.setenv("MDECOST_LAKE__CONNECTION_STRING_ENV", CONNECTION_ENV)
    monkeypatch.setenv("MDECOST_WAREHOUSE__PATH", str(tmp_path / "refused.duckdb"))
    monkeypatch.setenv(CONNECTION_ENV, connection)
    monkeypatch.setenv("MDECOST_LAKE__PATH", "abfs://nothing/estate")
    with pytest.raises(BuildRefusedError, match=r"^no lake at abfs://nothing/estate: check"):
        build()
    # The right account with a wrong key: Azure (and Azurite) refuse to authenticate it.
    account_key = next(part for part in connection.split(";") if part.startswith("AccountKey="))
    monkeypatch.setenv(CONNECTION_ENV, connection.replace(account_key, "AccountKey=" + "A" * 88))
    monkeypatch.setenv("MDECOST_LAKE__PATH", LAKE_URL)
    with pytest.raises(BuildRefusedError) as refused:
        build()
    assert str(refused.value).startswith(f"the lake at {LAKE_URL} cannot be read (")
    assert "\n" not in str(refused.value)
    assert "A" * 88 not in str(refused.value)
    assert not (tmp_path / "refused.duckdb").exists()


def test_a_lake_url_carrying_a_token_is_refused_without_echoing_it(tmp_path):
    config = tmp_path / "mdecost.toml"
    config.write_text(f'[lake]\npath = "{LAKE_URL}?sv=2025-01-01&sig=SECRET"\n')
    with pytest.raises(ConfigError) as refused:
        load_settings(config)
    assert "SECRET" not in str(refused.value)
    assert "a SAS token or key goes in the environment" in str(refused.value)
    config.write_text('[lake]\npath = "s3://bucket/lake"\n')
    with pytest.raises(ConfigError, match="must be a folder or an Azure storage URL"):
        load_settings(config)
