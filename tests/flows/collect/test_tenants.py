"""Several tenants into one lake: each `[[tenants]]` entry its own endpoint, credential and
scopes; a tenant whose sign-in fails is reported and the others are collected."""

from datetime import UTC, date, datetime

import duckdb
import pytest

from flows.build import build
from flows.collect import CollectIncomplete, collect
from flows.lake import scan_dataset
from flows.simulator.server import simulated_azure

pytestmark = pytest.mark.simulator

NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)
TENANT_A = "aaaaaaaa-0000-4000-8000-00000000000a"
TENANT_B = "bbbbbbbb-0000-4000-8000-00000000000b"
TENANT_C = "cccccccc-0000-4000-8000-00000000000c"


def tenant_entry(sim, tenant_id: str, token: str) -> str:
    return (
        "[[tenants]]\n"
        f'tenant_id = "{tenant_id}"\n'
        f'arm_endpoint = "{sim.arm_endpoint}"\n'
        f'ca_bundle = "{sim.ca_bundle}"\n'
        'credential = "static_token"\n'
        f'static_token = "{token}"\n'
    )


def test_two_tenants_collect_into_one_lake_and_a_third_that_cannot_sign_in_is_reported(
    prefect_harness, tmp_path
):
    with (
        simulated_azure(seed=3, machines=8, months=2, now=NOW) as first,
        simulated_azure(seed=4, machines=8, months=2, now=NOW) as second,
    ):
        first.estate.tenant_id, second.estate.tenant_id = TENANT_A, TENANT_B
        assert not set(first.estate.subscriptions) & set(second.estate.subscriptions)
        config = tmp_path / "mdecost.toml"
        config.write_text(
            f'[lake]\npath = "{tmp_path / "lake"}"\n'
            f'[warehouse]\npath = "{tmp_path / "warehouse.duckdb"}"\n'
            "[collect]\nqpu_window_scale = 0.01\n"
            + tenant_entry(first, TENANT_A, first.token)
            + tenant_entry(second, TENANT_B, second.token)
            # Tenant C's token is refused (401): its sign-in fails.
            + tenant_entry(second, TENANT_C, "not-the-token")
        )
        with pytest.raises(CollectIncomplete) as incomplete:
            collect(
                start=date(2026, 11, 1),
                end=date(2026, 11, 15),
                as_of=NOW,
                config_file=config,
            )
    summary = incomplete.value.summary
    assert [(chunk.scope, chunk.chunk) for chunk in summary.failures] == [
        (f"tenant {TENANT_C}", "sign-in")
    ]
    lake = tmp_path / "lake"
    names = scan_dataset(lake, "subscriptions").collect()
    tenants = dict(names.select("subscription_id", "tenant_id").iter_rows())
    expected = {sub: TENANT_A for sub in first.estate.subscriptions}
    expected |= {sub: TENANT_B for sub in second.estate.subscriptions}
    assert tenants == expected
    # Both tenants' machines and charges are in the one lake, each row saying the tenant it was
    # collected in: the [[tenants]] entry whose estate holds the row's subscription.
    for dataset in ("inventory", "costs"):
        frame = scan_dataset(lake, dataset).collect()
        seen = set(frame["subscription_id"].unique())
        assert {tenants[sub] for sub in seen} == {TENANT_A, TENANT_B}
        pairs = set(frame.select("subscription_id", "tenant_id").unique().iter_rows())
        assert pairs == {(sub, expected[sub]) for sub in seen}, dataset
    # Each tenant has its own QPU ledger.
    assert sorted(p.name for p in (lake / "state" / "qpu").glob("*.json")) == [
        f"{TENANT_A}.json",
        f"{TENANT_B}.json",
    ]
    # The warehouse says the tenant on every view with a subscription.
    build(config_file=config)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        for view in ("machines", "costs", "machine_hours_daily", "fleet_comparison_monthly"):
            pairs = con.sql(
                f"SELECT DISTINCT subscription_id, tenant_id FROM {view} "
                "WHERE subscription_id IS NOT NULL"
            ).fetchall()
            assert pairs and all(tenant == tenants[sub] for sub, tenant in pairs), view
