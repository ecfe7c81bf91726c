"""Asking Cost Management for less: Defender rows only, at the widest scope, within the QPU quota.

Against the session's simulated estate (5 subscriptions). Each test runs the `costs` task
itself (`collect_costs.fn`) or the whole flow, and compares the lake with the estate's own rows.
"""

from collections import Counter
from datetime import UTC, date, datetime

import polars as pl
import pytest
from azure.core.exceptions import HttpResponseError

from flows.collect import collect, collect_costs
from flows.lake import scan_dataset
from flows.simulator import billing
from flows.simulator.quota import QpuQuota
from tests.flows.collect.test_collect_flow import defender_rows
from transforms.billing import QPU_WINDOWS

pytestmark = pytest.mark.simulator

OCTOBER = "2026-10"
AS_OF = datetime(2026, 11, 15, 12, tzinfo=UTC)


def october(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.filter(pl.col("usage_date").is_between(date(2026, 10, 1), date(2026, 10, 31)))


def run_costs(simulator, lake, scope, env=(), covers=None):
    """The costs task for October at `scope`; the simulator's cost queries during it."""
    before = Counter(simulator.requests)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MDECOST_LAKE__PATH", str(lake))
        for name, value in env:
            patch.setenv(name, value)
        result = collect_costs.fn(
            simulator.config_path,
            scope,
            OCTOBER,
            "ActualCost",
            AS_OF,
            AS_OF,
            covers=covers,
        )
    return result, (Counter(simulator.requests) - before)["cost_query"]


def lake_costs(lake) -> pl.DataFrame:
    return scan_dataset(lake, "costs").collect()


def per_subscription(frame: pl.DataFrame, cost: str) -> dict[str, float]:
    totals = frame.group_by("subscription_id").agg(pl.col(cost).sum())
    return {sub: round(total, 9) for sub, total in totals.iter_rows()}


def test_the_filtered_query_returns_only_defender_rows_and_all_rows_when_asked(simulator, tmp_path):
    subscription = simulator.estate.subscriptions[0]
    scope = f"/subscriptions/{subscription}"
    every_row = october(simulator.estate.cost_rows(as_of=AS_OF)).filter(
        pl.col("subscription_id") == subscription
    )
    defender = defender_rows(every_row)
    # The estate bills VM compute and disks beside Defender: the filter must make a difference.
    assert 0 < defender.height < every_row.height

    result, queries = run_costs(simulator, tmp_path / "defender", scope)
    costs = lake_costs(tmp_path / "defender")
    assert queries == 1 and result.failure is None
    assert costs["sku_meter"].str.to_lowercase().str.contains(r"^standard p[12] node").all()
    assert costs["billed_cost"].sum() == pytest.approx(defender["cost"].sum())

    result, _ = run_costs(
        simulator, tmp_path / "all", scope, env=[("MDECOST_COLLECT__COST_ROWS", "all")]
    )
    costs = lake_costs(tmp_path / "all")
    assert costs["billed_cost"].sum() == pytest.approx(every_row["cost"].sum())
    assert set(costs["meter_category"]) >= {"Virtual Machines", *set(defender["meter_category"])}


def test_one_query_per_month_at_billing_account_scope_covers_every_subscription(
    simulator, tmp_path
):
    estate = simulator.estate
    chosen = [f"/subscriptions/{sub}" for sub in estate.subscriptions]
    result, queries = run_costs(simulator, tmp_path, simulator.billing.account_id, covers=chosen)
    assert result.failure is None
    # One query (one page: the page size is 1,000 rows) for the month, every subscription.
    assert queries == 1
    costs = lake_costs(tmp_path)
    truth = defender_rows(october(estate.cost_rows(as_of=AS_OF)))
    assert per_subscription(costs, "billed_cost") == per_subscription(truth, "cost")
    # Every chosen subscription has its partition, rows or none.
    partitions = sorted(
        part.removeprefix("subscription_id=")
        for path in (tmp_path / "raw" / "costs").rglob("*.parquet")
        for part in path.parts
        if part.startswith("subscription_id=")
    )
    assert partitions == sorted(estate.subscriptions)


def test_a_management_group_answers_for_its_subscriptions_only_and_mca_asks_the_profile(
    simulator, tmp_path
):
    estate = simulator.estate
    # mg-production holds the subscriptions at even positions (0, 2, 4 of 5).
    production = estate.subscriptions[0::2]
    group = f"{billing.GROUPS}/mg-production"
    result, queries = run_costs(simulator, tmp_path / "mg", group)
    assert (result.failure, queries) == (None, 1)
    truth = defender_rows(october(estate.cost_rows(as_of=AS_OF))).filter(
        pl.col("subscription_id").is_in(production)
    )
    assert per_subscription(lake_costs(tmp_path / "mg"), "billed_cost") == per_subscription(
        truth, "cost"
    )

    simulator.billing = billing.BillingLayout(billing.MCA)
    with pytest.raises(HttpResponseError, match="ManagementGroupScopeNotSupported"):
        run_costs(simulator, tmp_path / "mca-mg", group)
    profile = simulator.billing.profile_id
    result, queries = run_costs(simulator, tmp_path / "mca", profile)
    assert (result.failure, queries) == (None, 1)
    assert lake_costs(tmp_path / "mca")["billed_cost"].sum() == pytest.approx(
        defender_rows(october(estate.cost_rows(as_of=AS_OF)))["cost"].sum()
    )


def test_qpu_pacing_keeps_every_window_under_its_limit_against_an_enforcing_simulator(
    simulator, prefect_harness, tmp_path
):
    """Five subscriptions x four months, four queries in flight: 20 queries. The simulator
    refuses (429) any query that would take a window past 12 / 10 s, 60 / min, 600 / h (here
    ten times as fast: 12 per second); the client must never meet one."""
    simulator.quota = QpuQuota(enforce=True, scale=0.1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MDECOST_LAKE__PATH", str(tmp_path))
        patch.setenv("MDECOST_COLLECT__COST_QUERY_CONCURRENCY", "4")
        patch.setenv("MDECOST_COLLECT__QPU_WINDOW_SCALE", "0.1")
        summary = collect(
            start=date(2026, 8, 18),
            end=date(2026, 11, 16),
            as_of=simulator.clock,
            config_file=simulator.config_path,
        )
    tenant = simulator.estate.tenant_id
    peaks = simulator.quota.busiest(tenant)
    assert simulator.quota.refused == 0
    assert all(peaks[seconds] <= limit for seconds, limit in QPU_WINDOWS)
    # 5 subscriptions x 4 months (August to November) = 20 queries of one month: 20 QPU.
    assert summary.qpu == 20
    assert simulator.quota.used(tenant) == 20
    # 20 QPU through a window of 12 per second: the 13th waited for the first to leave it.
    assert summary.paced_seconds > 0
    assert any("used 20 QPU" in line for line in summary.lines())


def test_scopes_lists_what_the_credential_reads_and_recommends_the_widest(simulator):
    from flows.azure_clients import AzureClients
    from flows.collect.discovery import discover

    settings = simulator.settings()
    client = AzureClients(settings).cost()
    report = discover(client, settings.azure.arm_endpoint, subscriptions=5)
    assert [(s.kind, s.subscriptions) for s in report.scopes] == [
        ("billing account", None),
        ("management group", 5),  # the tenant root group
        ("management group", 3),  # mg-production: positions 0, 2, 4
        ("management group", 2),  # mg-development: positions 1, 3
    ]
    lines = report.lines([], months=13, cost_types=1)
    # Each subscription: 5 QPU a month, 13 months = 65 QPU; the billing account: 13 QPU.
    assert "  QPU per month of data: 5; 13 month(s): 65 QPU, 6 min of the tenant's quota" in lines
    assert lines[-1].startswith(
        f"widest readable scope: {simulator.billing.account_id} (billing account): 1 QPU per "
        "month, 13 month(s) 13 QPU"
    )

    simulator.billing = billing.BillingLayout(billing.MCA)
    report = discover(client, settings.azure.arm_endpoint, subscriptions=5)
    assert report.recommended().scope == simulator.billing.profile_id
    assert {s.usable for s in report.scopes if s.kind == "management group"} == {False}


def test_subscription_names_and_management_group_paths_are_collected(simulator, tmp_path):
    from flows.collect import collect_subscriptions

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MDECOST_LAKE__PATH", str(tmp_path))
        result = collect_subscriptions.fn(simulator.config_path, AS_OF, AS_OF)
    assert (result.failure, result.rows) == (None, 5)
    names = scan_dataset(tmp_path, "subscriptions").collect().sort("subscription_id")
    specs = {s.subscription_id: s for s in simulator.estate.subscription_specs}
    order = simulator.estate.subscriptions
    for row in names.iter_rows(named=True):
        sub = row["subscription_id"]
        assert row["display_name"] == specs[sub].display_name
        assert row["tenant_id"] == simulator.estate.tenant_id
        # Even positions sit in Production, odd ones in Development, both under the root.
        group = "Production" if order.index(sub) % 2 == 0 else "Development"
        assert row["management_group_path"] == f"Tenant Root Group / {group}"


def test_a_backfill_names_each_month_it_could_not_collect_and_the_quota_the_rest_needs():
    from flows.collect import ChunkResult, CollectSummary

    chunks = [ChunkResult("costs", "/subscriptions/a", "2025-11 ActualCost", rows=40, qpu=1)]
    for month in ("2025-12", "2026-01"):
        failed = ChunkResult("costs", "/subscriptions/a", f"{month} ActualCost")
        failed.failure = "RetriesExhausted: still 429 throttled after 8 retries"
        chunks.append(failed)
    summary = CollectSummary(
        date(2025, 11, 1), date(2026, 2, 1), AS_OF, ["/subscriptions/a"], chunks
    )
    lines = summary.lines()
    assert (
        "  costs /subscriptions/a 2025-12 ActualCost: NOT READ - RetriesExhausted: still 429 "
        "throttled after 8 retries" in lines
    )
    assert (
        "  costs /subscriptions/a 2026-01 ActualCost: NOT READ - RetriesExhausted: still 429 "
        "throttled after 8 retries" in lines
    )
    # Two months of one scope: 2 QPU, at 600 QPU an hour well under a minute.
    assert lines[-1] == (
        "2 cost month(s) not collected (listed above); running the same command again collects "
        "them and skips final months already in the lake: about 2 QPU, 0 min of the tenant's "
        "quota"
    )
