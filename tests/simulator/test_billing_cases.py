"""The billing cases of issue 11, as the simulated estate serves them to the real SDK clients.

Session estate: seed 7, 36 machines, 4 months to 2026-11-15 12:00 UTC, so the last complete
month is October 2026 (`flows.simulator.cases` places each case there). Prices: P1 0.00672 and
P2 0.02 USD per server-hour; the MDE benefit meter 0.02 - 0.00672 = 0.01328 USD per hour.
"""

import json
import ssl
import urllib.request
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import polars as pl
import pytest

from flows.azure_clients import AzureClients
from transforms.billing import subscription_pricing_id

pytestmark = pytest.mark.simulator

OCT = 10
COST_COLUMNS = ["Cost", "UsageQuantity", "ResourceId", "Meter", "UsageDate", "Currency"]


@pytest.fixture
def clients(simulator) -> AzureClients:
    return AzureClients(simulator.settings())


def at(month: int, day: int, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def subscription_named(estate, name: str):
    return next(s for s in estate.subscription_specs if s.display_name == name)


def wire_pricing(simulator, scope: str) -> dict:
    """The pricing exactly as served (no SDK), to read the wire strings."""
    context = ssl.create_default_context(cafile=str(simulator.ca_bundle))
    request = urllib.request.Request(
        f"{simulator.arm_endpoint}{scope}/providers/Microsoft.Security/pricings/VirtualMachines"
        "?api-version=2024-01-01"
    )
    request.add_header("Authorization", f"Bearer {simulator.token}")
    with urllib.request.urlopen(request, context=context) as response:
        return json.loads(response.read())["properties"]


def cost_rows(clients, subscription: str, first: date, last: date) -> pl.DataFrame:
    """Daily cost rows by ResourceId and Meter from the Query API (every page)."""
    body = {
        "type": "ActualCost",
        "timeframe": "Custom",
        "timePeriod": {"from": f"{first}T00:00:00Z", "to": f"{last}T23:59:59Z"},
        "dataset": {
            "granularity": "Daily",
            "aggregation": {
                "totalCost": {"name": "Cost", "function": "Sum"},
                "totalQuantity": {"name": "UsageQuantity", "function": "Sum"},
            },
            "grouping": [
                {"type": "Dimension", "name": "ResourceId"},
                {"type": "Dimension", "name": "Meter"},
            ],
        },
    }
    query = clients.cost().query
    scope = f"/subscriptions/{subscription}"
    result = query.usage(scope, body)
    assert [c.name for c in result.columns] == COST_COLUMNS
    rows = list(result.rows)
    while result.next_link:
        token = parse_qs(urlsplit(result.next_link).query)["$skiptoken"][0]
        result = query.usage(scope, body, params={"$skiptoken": token})
        rows.extend(result.rows)
    return pl.DataFrame(rows, schema=COST_COLUMNS, orient="row").with_columns(
        pl.col("ResourceId").str.to_lowercase(),
        pl.col("UsageDate").cast(pl.String).str.to_date("%Y%m%d"),
    )


def defender(rows: pl.DataFrame, resource_id: str) -> pl.DataFrame:
    return rows.filter(
        (pl.col("ResourceId") == resource_id.lower()) & pl.col("Meter").str.starts_with("Standard")
    ).sort("UsageDate")


def test_plan_change_on_day_16_shows_in_pricings_and_meters(clients, simulator):
    """Case 1: web-prod-02's resource-level P1 is removed at 2026-10-16 00:00; it inherits P2."""
    estate = simulator.estate
    machine = next(t.machine for t in estate.timelines if t.machine.override_until)
    assert machine.override_until == at(OCT, 16, 0)
    security = clients.security(machine.subscription.subscription_id).pricings
    simulator.set_clock(at(OCT, 15))
    before = security.get(machine.arm_id, "VirtualMachines")
    assert (before.inherited, before.pricing_tier, before.sub_plan) == ("False", "Standard", "P1")
    simulator.set_clock(at(OCT, 16))
    after = security.get(machine.arm_id, "VirtualMachines")
    assert (after.inherited, after.sub_plan) == ("True", "P2")
    assert after.inherited_from == f"/subscriptions/{machine.subscription.subscription_id}"

    simulator.reset()
    rows = defender(
        cost_rows(
            clients, machine.subscription.subscription_id, date(2026, 10, 15), date(2026, 10, 16)
        ),
        machine.arm_id,
    )
    # Running all day both days: 24 h x 0.00672 = 0.16128; 24 h x 0.02 = 0.48.
    assert rows.select("UsageDate", "Meter", "UsageQuantity").rows() == [
        (date(2026, 10, 15), "Standard P1 Node", 24.0),
        (date(2026, 10, 16), "Standard P2 Node", 24.0),
    ]
    assert rows["Cost"].to_list() == pytest.approx([0.16128, 0.48])
    truth = estate.plans_daily().filter(pl.col("resource_id") == machine.arm_id.lower())
    assert truth.filter(pl.col("usage_date").is_between(date(2026, 10, 15), date(2026, 10, 16)))[
        "plan"
    ].to_list() == ["P1", "P2"]


def test_enablement_on_day_20_bills_only_from_then(clients, simulator):
    """Case 2: Sandbox enables Plan 1 at 2026-10-20 00:00, its trial long used up."""
    estate = simulator.estate
    sandbox = subscription_named(estate, "Contoso Sandbox")
    scope = f"/subscriptions/{sandbox.subscription_id}"
    simulator.set_clock(at(OCT, 19))
    before = wire_pricing(simulator, scope)
    assert before["pricingTier"] == "Free"
    assert "subPlan" not in before and "enablementTime" not in before
    assert before["freeTrialRemainingTime"] == "PT0S"
    simulator.set_clock(at(OCT, 20))
    after = wire_pricing(simulator, scope)
    assert (after["pricingTier"], after["subPlan"]) == ("Standard", "P1")
    assert after["enablementTime"] == "2026-10-20T00:00:00.0000000Z"
    assert after["freeTrialRemainingTime"] == "PT0S"

    simulator.reset()
    rows = cost_rows(clients, sandbox.subscription_id, date(2026, 10, 1), date(2026, 10, 31))
    billed = rows.filter(pl.col("Meter").str.starts_with("Standard"))
    assert billed["UsageDate"].min() == date(2026, 10, 20)
    assert set(billed["Meter"]) == {"Standard P1 Node"}
    assert billed["Cost"].sum() == pytest.approx(billed["UsageQuantity"].sum() * 0.00672)
    covered = estate.plans_daily().filter(
        (pl.col("subscription_id") == sandbox.subscription_id)
        & pl.col("usage_date").is_between(date(2026, 10, 1), date(2026, 10, 31))
        & pl.col("plan").is_not_null()
    )
    assert covered["usage_date"].min() == date(2026, 10, 20)
    assert billed["UsageQuantity"].sum() == pytest.approx(covered["billable_hours"].sum())


def test_trial_subscription_reports_its_remaining_days_and_bills_zero(clients, simulator):
    """Case 3: Analytics first enabled Plan 2 at 2026-11-05 00:00: the trial runs to 12-05 00:00,
    so at 11-15 12:00 there remain 19 days 12 hours; its two VMs run all day, billed at 0."""
    estate = simulator.estate
    analytics = subscription_named(estate, "Contoso Analytics")
    scope = f"/subscriptions/{analytics.subscription_id}"
    now = wire_pricing(simulator, scope)
    assert (now["pricingTier"], now["subPlan"]) == ("Standard", "P2")
    assert now["enablementTime"] == "2026-11-05T00:00:00.0000000Z"
    assert now["freeTrialRemainingTime"] == "P19DT12H"
    pricing = clients.security(analytics.subscription_id).pricings.get(
        scope.lstrip("/"), "VirtualMachines"
    )
    assert pricing.free_trial_remaining_time == timedelta(days=19, hours=12)
    simulator.set_clock(at(11, 4))
    before = wire_pricing(simulator, scope)
    assert before["pricingTier"] == "Free"
    assert before["freeTrialRemainingTime"] == "P30D"  # never enabled: the whole trial ahead

    simulator.reset()
    # Final figures only (11-14 is still the first, incomplete report at 11-15 12:00).
    rows = cost_rows(clients, analytics.subscription_id, date(2026, 11, 1), date(2026, 11, 13))
    billed = rows.filter(pl.col("Meter").str.starts_with("Standard"))
    assert billed["UsageDate"].min() == date(2026, 11, 5)
    assert billed["Cost"].sum() == 0.0
    # 2 VMs x 9 days (11-05..11-13) x 24 h, less the 1.107323 h one was not running on 11-08.
    assert billed["UsageQuantity"].sum() == pytest.approx(2 * 9 * 24 - 1.107323, abs=1e-5)
    trial = estate.plans_daily().filter(
        (pl.col("subscription_id") == analytics.subscription_id) & pl.col("trial")
    )
    assert trial["usage_date"].min() == date(2026, 11, 5)


def test_mde_benefit_meter_from_the_approval_day(clients, simulator):
    """Case 4: three Production VMs on "Standard P2 Node - MDATP Benefit" from 2026-10-18."""
    estate = simulator.estate
    benefit = estate.benefit_machines()
    assert benefit.height == 3
    assert set(benefit["approved_on"]) == {date(2026, 10, 18)}
    production = subscription_named(estate, "Contoso Production")
    rows = cost_rows(clients, production.subscription_id, date(2026, 10, 17), date(2026, 10, 18))
    for resource_id in benefit["resource_id"]:
        mine = defender(rows, resource_id)
        # Running all day: 24 h x 0.02 = 0.48 before; 24 h x 0.01328 = 0.31872 from approval.
        assert mine.select("UsageDate", "Meter", "UsageQuantity").rows() == [
            (date(2026, 10, 17), "Standard P2 Node", 24.0),
            (date(2026, 10, 18), "Standard P2 Node - MDATP Benefit", 24.0),
        ]
        assert mine["Cost"].to_list() == pytest.approx([0.48, 0.31872])


def test_defender_charge_on_a_log_analytics_workspace(clients, simulator):
    """Case 5: Plan 2 billed on a workspace 2026-10-23..27: 48 h x 0.02 = 0.96 a day."""
    estate = simulator.estate
    truth = estate.non_machine_charges()
    production = subscription_named(estate, "Contoso Production")
    workspace = f"log-{production.subscription_id[:8]}-security"
    (workspace,) = {rid for rid in truth["resource_id"] if rid.endswith(workspace)}
    assert "/providers/microsoft.operationalinsights/workspaces/" in workspace
    rows = cost_rows(clients, production.subscription_id, date(2026, 10, 22), date(2026, 10, 28))
    served = defender(rows, workspace)
    assert served["UsageDate"].to_list() == [date(2026, 10, d) for d in range(23, 28)]
    assert set(served["Meter"]) == {"Standard P2 Node"}
    assert served["UsageQuantity"].to_list() == [48.0] * 5
    assert served["Cost"].to_list() == pytest.approx([0.96] * 5)
    machine_ids = set(estate.machines()["resource_id"])
    assert workspace not in machine_ids


def test_arc_machines_connectors_and_direct_onboarding_in_cost_data(clients, simulator):
    """Case 11 as the Query API serves it (Production, Plan 2 at 0.02 per hour):
    - SQL-OnPrem-01, disconnected 10-12 02:00 to 10-13 10:00: 2 h (0.04) on the 12th, 14 h
      (0.28) on the 13th, 24 h (0.48) on the 11th, on its Arc id;
    - i-0a1b2c3d4e5f60718 (AWS), its registration (a Hybrid Compute write) 10-05 09:30:00 to
      09:30:40, Connected after: 14.5 h - 40 s = 14.48889 h (0.2897778) on the 5th;
    - the AWS connector's id: 3 h (0.06) on 10-23 and 10-24;
    - sql-onprem-01.contoso.local and branch-fs-01.contoso.local, directly onboarded: 24 h
      (0.48) on 10-08..10-10 each, not ARM ids.
    """
    estate = simulator.estate
    production = subscription_named(estate, "Contoso Production")
    rows = cost_rows(clients, production.subscription_id, date(2026, 10, 1), date(2026, 10, 31))
    arc = {t.machine.name: t.machine.arm_id for t in estate.timelines if t.machine.arc_provider}
    sql = defender(rows, arc["SQL-OnPrem-01"]).filter(
        pl.col("UsageDate").is_in([date(2026, 10, d) for d in (11, 12, 13)])
    )
    assert sql["UsageQuantity"].to_list() == [24.0, 2.0, 14.0]
    assert sql["Cost"].to_list() == pytest.approx([0.48, 0.04, 0.28])
    ec2 = defender(rows, arc["i-0a1b2c3d4e5f60718"])
    assert ec2["UsageDate"][0] == date(2026, 10, 5)
    assert ec2["UsageQuantity"][0] == pytest.approx(14.5 - 40 / 3600)
    assert ec2["Cost"][0] == pytest.approx(0.02 * (14.5 - 40 / 3600))
    aws = next(c for c in estate.connector_specs if c.cloud == "aws")
    on_connector = defender(rows, aws.arm_id)
    assert on_connector["UsageDate"].to_list() == [date(2026, 10, 23), date(2026, 10, 24)]
    assert on_connector["Cost"].to_list() == pytest.approx([0.06, 0.06])
    for server in ("sql-onprem-01.contoso.local", "branch-fs-01.contoso.local"):
        direct = defender(rows, server)
        assert direct["UsageDate"].to_list() == [date(2026, 10, d) for d in (8, 9, 10)]
        assert direct["Cost"].to_list() == pytest.approx([0.48] * 3)
    # An Arc machine has no compute or disk rows: Azure does not bill its hardware.
    arc_ids = {arm_id.lower() for arm_id in arc.values()}
    assert set(rows.filter(pl.col("ResourceId").is_in(arc_ids))["Meter"]) == {"Standard P2 Node"}


def test_unexpected_workspace_charges_all_month(clients, simulator):
    """Case 12: Plan 2 billed on a Shared Services workspace every day of October 2026 for 12
    servers around the clock: 12 x 24 = 288 h x 0.02 = 5.76 a day, 31 x 5.76 = 178.56."""
    shared = subscription_named(simulator.estate, "Contoso Shared Services")
    workspace = (
        f"/subscriptions/{shared.subscription_id}/resourcegroups/rg-shared-tools/providers/"
        f"microsoft.operationalinsights/workspaces/log-{shared.subscription_id[:8]}-direct-onboarding"
    )
    rows = cost_rows(clients, shared.subscription_id, date(2026, 10, 1), date(2026, 11, 1))
    served = defender(rows, workspace)
    assert served["UsageDate"].to_list() == [date(2026, 10, d) for d in range(1, 32)]
    assert served["UsageQuantity"].to_list() == [288.0] * 31
    assert sum(served["Cost"]) == pytest.approx(178.56)


def test_shared_services_cost_data_lags_three_days(clients, simulator):
    """Case 6: at 2026-11-15 12:00 the others are billed to 11-14, Shared Services to 11-11 (a
    day's rows appear a day after it starts, 3 days later for the lagging subscription)."""
    estate = simulator.estate
    shared = subscription_named(estate, "Contoso Shared Services")
    expected = dict(estate.last_billed_days().select("subscription_id", "last_billed_day").rows())
    assert expected[shared.subscription_id] == date(2026, 11, 11)
    for subscription in estate.subscriptions:
        rows = cost_rows(clients, subscription, date(2026, 11, 1), date(2026, 11, 15))
        last = rows["UsageDate"].max()
        assert last == (
            date(2026, 11, 11) if subscription == shared.subscription_id else date(2026, 11, 14)
        )
        assert last == expected[subscription]
    # On 11-15 00:00 exactly, 11-14 has just appeared for the others, 11-11 for Shared Services.
    simulator.set_clock(at(11, 15, 0))
    assert cost_rows(clients, shared.subscription_id, date(2026, 11, 1), date(2026, 11, 15))[
        "UsageDate"
    ].max() == date(2026, 11, 11)


def test_free_override_is_not_in_the_subscription_level_charge(clients, simulator):
    """Case 7: Dev/Test is charged on its pricing id; uat-api-14 is Free at resource level, so on
    2026-07-15 the row's quantity is the other covered machines' hours, not its 10.429459 h."""
    estate = simulator.estate
    devtest = subscription_named(estate, "Contoso Dev/Test")
    free = next(
        t.machine
        for t in estate.timelines
        if t.machine.subscription is devtest and t.machine.pricing_override == "Free"
    )
    day = date(2026, 7, 15)
    hours = estate.plans_daily().filter(
        (pl.col("subscription_id") == devtest.subscription_id) & (pl.col("usage_date") == day)
    )
    free_hours = hours.filter(pl.col("resource_id") == free.arm_id.lower())["billable_hours"].item()
    assert free_hours == pytest.approx(10.429459, abs=1e-6)
    rows = cost_rows(clients, devtest.subscription_id, day, day)
    charged = rows.filter(pl.col("ResourceId") == subscription_pricing_id(devtest.subscription_id))
    assert charged["Meter"].to_list() == ["Standard P1 Node"]
    quantity = charged["UsageQuantity"].item()
    assert quantity == pytest.approx(hours["billable_hours"].sum() - free_hours)
    assert charged["Cost"].item() == pytest.approx(quantity * 0.00672)


def test_scale_set_level_plan_covers_its_instances(clients, simulator):
    """Case 8: vmss-web is set to Plan 1 on the Plan 2 Production subscription; its instances
    say they inherit from the set, and are billed on the P1 meter."""
    estate = simulator.estate
    scale_set = estate.scale_set_specs[0]
    security = clients.security(scale_set.subscription.subscription_id).pricings
    own = security.get(scale_set.arm_id, "VirtualMachines")
    assert (own.inherited, own.pricing_tier, own.sub_plan) == ("False", "Standard", "P1")
    instance = next(t.machine for t in estate.timelines if t.machine.scale_set is scale_set)
    inherited = security.get(instance.arm_id, "VirtualMachines")
    assert (inherited.inherited, inherited.sub_plan) == ("True", "P1")
    assert inherited.inherited_from == scale_set.arm_id
    rows = cost_rows(
        clients, scale_set.subscription.subscription_id, date(2026, 10, 1), date(2026, 10, 31)
    )
    instances = rows.filter(
        pl.col("ResourceId").str.starts_with(scale_set.arm_id.lower() + "/virtualmachines/")
    )
    assert set(instances["Meter"]) == {"Standard P1 Node"}


def test_move_day_is_billed_under_the_subscription_the_vm_left(clients, simulator):
    """Case 9: a Production VM moved to Shared Services at 2026-10-22 00:00 (same vmId): its
    10-22 row (24 h, 0.48) comes with Production's data but names the Shared Services id."""
    estate = simulator.estate
    move = estate.moves().row(0, named=True)
    assert move["moved_at"] == at(OCT, 22, 0)
    production = move["billed_under"]
    shared = move["to_resource_id"].split("/")[2]
    assert shared != production
    old = cost_rows(clients, production, date(2026, 10, 21), date(2026, 10, 23))
    assert defender(old, move["from_resource_id"])["UsageDate"].to_list() == [date(2026, 10, 21)]
    moved_day = defender(old, move["to_resource_id"])
    assert moved_day.select("UsageDate", "Meter", "UsageQuantity").rows() == [
        (date(2026, 10, 22), "Standard P2 Node", 24.0)
    ]
    assert moved_day["Cost"].item() == pytest.approx(0.48)
    new = cost_rows(clients, shared, date(2026, 10, 21), date(2026, 10, 23))
    assert defender(new, move["to_resource_id"])["UsageDate"].to_list() == [date(2026, 10, 23)]


def test_scale_set_deallocated_as_a_whole_logs_only_on_the_set(clients, simulator):
    """Case 10: `deallocate` on vmss-web on 10-24 evening, `start` on 10-25 morning: six events
    on the set, none on its instances, and each instance's billable hours follow them."""
    estate = simulator.estate
    scale_set = estate.scale_set_specs[0]
    start, end = at(OCT, 24, 0), at(OCT, 26, 0)
    window = (
        f"eventTimestamp ge '{start.isoformat()}' and eventTimestamp le '{end.isoformat()}' "
        f"and resourceGroupName eq '{scale_set.resource_group}'"
    )
    monitor = clients.monitor(scale_set.subscription.subscription_id).activity_logs
    events = sorted(monitor.list(filter=window), key=lambda e: e.event_timestamp)
    ours = [e for e in events if e.resource_id.lower().startswith(scale_set.arm_id.lower())]
    assert [(e.operation_name.value, e.status.value) for e in ours] == [
        (f"Microsoft.Compute/virtualMachineScaleSets/{op}/action", status)
        for op in ("deallocate", "start")
        for status in ("Started", "Accepted", "Succeeded")
    ]
    assert {e.resource_id for e in ours} == {scale_set.arm_id}
    assert len({e.correlation_id for e in ours}) == 2
    deallocate_started = ours[0].event_timestamp
    start_succeeded = ours[5].event_timestamp
    # Running until the deallocation starts, and again once the start succeeds:
    # 10-24: hours from 00:00 to the Started event; 10-25: from the Succeeded event to 24:00.
    hours_24 = (deallocate_started - start).total_seconds() / 3600
    hours_25 = (end - start_succeeded).total_seconds() / 3600
    truth = estate.plans_daily().filter(
        pl.col("resource_id").str.starts_with(scale_set.arm_id.lower() + "/")
        & pl.col("usage_date").is_between(date(2026, 10, 24), date(2026, 10, 25))
    )
    assert truth.height == 4  # the two instances existing then
    assert truth.sort("usage_date")["billable_hours"].to_list() == pytest.approx(
        [hours_24, hours_24, hours_25, hours_25], abs=1e-6
    )
