"""The transforms against the simulated estate's ground truth (in process, no HTTP).

The simulator's timelines are the truth; it serves only what Azure would: inventory snapshots
(power state at an instant), Activity Log events and cost rows. Here those are turned into raw
lake frames directly (the collectors' job end to end is tested elsewhere), and the rebuilt
figures must equal the truth: billable hours to the microsecond, the machines' plans and
lifetimes, the money, and exactly the billing errors the simulator planted.

One thing a daily collection cannot know is the instant of a move between subscriptions (case 9
of issue #11): no Compute event, the old id is last listed by one collection and the new id
first by the next. The warehouse's rule (`transforms/machines.py`) ends the old id at its last
sighting, so the time between the two collections counts on the new id. `move_rule` works out
from the truth and the collection clocks where that rule puts each move, and the comparisons
expect exactly that.
"""

from datetime import UTC, date, datetime, time, timedelta

import polars as pl
import pytest

from flows.simulator import cases
from flows.simulator.estate import Estate
from tests.transforms.conftest import RawLake, build_views

TIMESTAMP = pl.Datetime("us", "UTC")
NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)


def _provenance(now: datetime) -> dict[str, pl.Expr]:
    return {
        "ingested_at": pl.lit(now).cast(TIMESTAMP),
        "source": pl.lit("simulator"),
        "scope": pl.lit("estate"),
    }


class SimulatedLake(RawLake):
    """The raw lake a daily collection of the simulated estate would hold."""

    def __init__(self, estate: Estate, snapshot_clocks: list[datetime]) -> None:
        super().__init__(snapshot_at=estate.now)
        provenance = _provenance(estate.now)
        alive = pl.concat(
            [
                estate.alive_at(clock).with_columns(snapshot_at=pl.lit(clock).cast(TIMESTAMP))
                for clock in snapshot_clocks
            ]
        )
        self._inventory = alive.lazy().select(
            "snapshot_at",
            "resource_id",
            "subscription_id",
            "resource_group",
            "machine_name",
            "machine_kind",
            "vm_id",
            "scale_set_name",
            "location",
            "size",
            "os_type",
            tags=pl.lit(None, dtype=pl.String),
            created_at="created_at",
            power_state="state",
            mde_sensor="mde_sensor",
            mde_extension_type=pl.lit(None, dtype=pl.String),
            provider="provider",
            # Arc machines report when their status began (lastStatusChange).
            status_changed_at=pl.when(pl.col("machine_kind") == "arc").then("state_since"),
            **provenance,
        )
        self._events = estate.activity_events().lazy().with_columns(**provenance)
        # Each daily collection reads the pricings as they are at its clock, with their
        # enablementTime and freeTrialRemainingTime: the history the plan timeline reads.
        self._pricings = (
            pl.concat(
                [
                    estate.pricings(clock).with_columns(snapshot_at=pl.lit(clock).cast(TIMESTAMP))
                    for clock in snapshot_clocks
                ]
            )
            .lazy()
            .select(
                "snapshot_at",
                "subscription_id",
                pricing_id=pl.lit("pricing"),
                level="level",
                resource_id="resource_id",
                pricing_tier="pricing_tier",
                sub_plan="sub_plan",
                inherited="inherited",
                inherited_from="inherited_from",
                enablement_time="enablement_time",
                free_trial_remaining="free_trial_remaining",
                **provenance,
            )
        )
        day_start = pl.col("usage_date").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        self._costs = (
            estate.cost_rows()
            .lazy()
            .select(
                charge_period_start=day_start,
                charge_period_end=day_start + timedelta(days=1),
                subscription_id="subscription_id",
                sub_account_id=pl.lit(None, dtype=pl.String),
                resource_id="resource_id",
                resource_type="resource_type",
                service_name="service_name",
                meter_category="meter_category",
                meter_subcategory="meter_subcategory",
                sku_meter="meter",
                charge_description=pl.lit(None, dtype=pl.String),
                charge_category=pl.lit("Usage"),
                consumed_quantity="quantity",
                consumed_unit=pl.lit("Hours"),
                x_unit_of_measure="unit_of_measure",
                billed_cost="cost",
                effective_cost="cost",
                billing_currency="currency",
                cost_type=pl.lit("ActualCost"),
                cost_source=pl.lit("query"),
                **provenance,
            )
        )
        self.price("defender_servers_p1", 0.00672, date(2020, 1, 1))
        self.price("defender_servers_p2", 0.02, date(2020, 1, 1))
        self.price("mde_for_servers", 5.0, date(2020, 1, 1))

    @property
    def inventory(self) -> pl.LazyFrame:
        return self._inventory

    @property
    def power_events(self) -> pl.LazyFrame:
        return self._events

    @property
    def costs(self) -> pl.LazyFrame:
        return self._costs

    @property
    def pricings(self) -> pl.LazyFrame:
        return self._pricings


@pytest.fixture(scope="module", params=[7, 11])
def simulated(request):
    estate = Estate.generate(seed=request.param, machines=40, months=2, now=NOW)
    days = (estate.now - estate.window_start).days
    daily = [estate.window_start + timedelta(days=k) for k in range(days + 1)] + [estate.now]
    lake = SimulatedLake(estate, daily)
    views = build_views(lake, window_start=estate.window_start, window_end=estate.now)
    return estate, views, move_rule(estate, daily)


def move_rule(estate: Estate, clocks: list[datetime]) -> pl.DataFrame:
    """Per move of the TRUE estate, where the warehouse's move rule puts it.

    The old id is last sighted by the last collection before the true move (a collection at the
    move instant already lists the new id) or by its last event, the new id first sighted by the
    first collection at or after the move or its first event; the rule's `moved_at` is the
    earlier of the two. `gap_days` are the days of [rule's moved_at, true moved_at): their
    billable hours count on the new id (both bounds fall at 00:00 here, checked).
    """
    events = estate.activity_events()
    rows = []
    for move in estate.moves().iter_rows(named=True):
        moved_at = move["moved_at"]
        old_events = events.filter(pl.col("resource_id") == move["from_resource_id"])["event_at"]
        new_events = events.filter(pl.col("resource_id") == move["to_resource_id"])["event_at"]
        last_old = max([c for c in clocks if c < moved_at] + old_events.to_list())
        first_new = min([c for c in clocks if c >= moved_at] + new_events.to_list())
        rule_moved_at = min(last_old, first_new)
        assert rule_moved_at.time() == time() == moved_at.time()
        gap = (moved_at - rule_moved_at).days
        rows.append(
            {
                **move,
                "rule_moved_at": rule_moved_at,
                "gap_days": [rule_moved_at.date() + timedelta(days=k) for k in range(gap)],
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            **estate.moves().schema,
            "rule_moved_at": TIMESTAMP,
            "gap_days": pl.List(pl.Date),
        },
    )


def expected_hours(estate: Estate, moves: pl.DataFrame) -> pl.DataFrame:
    """The truth's billable hours per machine-day, the move gaps counted on the new ids."""
    truth = estate.billable_hours_daily().select(
        "usage_date", "resource_id", "subscription_id", "billable_hours"
    )
    gaps = moves.select(
        usage_date="gap_days",
        resource_id="from_resource_id",
        new_resource_id="to_resource_id",
        new_subscription_id=pl.col("to_resource_id").str.extract(r"^/subscriptions/([^/]+)", 1),
    ).explode("usage_date")
    relabelled = truth.join(gaps, on=["usage_date", "resource_id"], how="left").select(
        "usage_date",
        resource_id=pl.coalesce("new_resource_id", "resource_id"),
        subscription_id=pl.coalesce("new_subscription_id", "subscription_id"),
        billable_hours="billable_hours",
    )
    assert relabelled.select("usage_date", "resource_id").is_unique().all()
    return relabelled


def test_the_move_case_is_in_the_window_with_a_one_day_gap(simulated):
    # Case 9 moves one VM at 00:00; the daily collections at 00:00 list the old id last the
    # day before, so exactly one day (the day before the move) is the gap.
    _, _, moves = simulated
    assert moves.height == 1
    move = moves.row(0, named=True)
    assert move["rule_moved_at"] == move["moved_at"] - timedelta(days=1)
    assert move["gap_days"] == [move["moved_at"].date() - timedelta(days=1)]


def test_billable_hours_equal_the_ground_truth_to_the_microsecond(simulated):
    estate, views, moves = simulated
    truth = expected_hours(estate, moves)
    ours = views["machine_hours_daily"]
    compared = truth.join(
        ours, on=["usage_date", "resource_id"], how="full", coalesce=True, suffix="_ours"
    )
    assert compared.height == truth.height == ours.height
    assert (compared["subscription_id"] == compared["subscription_id_ours"]).all()
    difference = (compared["billable_hours"] - compared["billable_hours_ours"]).abs()
    assert difference.max() < 1e-9  # 3.6 microseconds


def test_machines_have_the_true_plan_and_lifetime(simulated):
    # The plan in force now, created and deleted as in the truth; a moved-out id ends at the
    # move rule's instant (its true move, `moved_at` in the truth, is a day later).
    estate, views, moves = simulated
    columns = ["resource_id", "defender_plan", "deleted_at", "created_at", "moved_at"]
    truth = (
        estate.machines()
        .join(
            moves.select(resource_id="from_resource_id", rule_moved_at="rule_moved_at"),
            on="resource_id",
            how="left",
        )
        .with_columns(moved_at=pl.when(pl.col("moved_at").is_not_null()).then("rule_moved_at"))
        .select(columns)
    )
    assert truth["moved_at"].drop_nulls().len() == moves.height
    ours = views["machines"].select(columns)
    assert ours.sort("resource_id").equals(truth.sort("resource_id"))


# Every Defender for Servers meter: the standard ones and the MDE benefit's (issue #11, 3).
DEFENDER_FOR_SERVERS_METER = r"^Standard P[12] Node( - MDATP Benefit)?$"


def test_money_is_conserved_and_only_the_planted_billing_errors_are_found(simulated):
    estate, views, moves = simulated
    cost_rows = estate.cost_rows()
    defender_rows = cost_rows.filter(pl.col("meter").str.contains(DEFENDER_FOR_SERVERS_METER))
    charges = views["defender_charges_daily"]
    billed = charges["billed_cost"].sum()
    assert billed == pytest.approx(defender_rows["cost"].sum(), abs=1e-9)
    # The benefit meter (case 4) is a machine's charge, recorded with its benefit.
    benefit_rows = defender_rows.filter(pl.col("meter").str.ends_with(" - MDATP Benefit"))
    assert benefit_rows.height > 0
    on_benefit = charges.filter(pl.col("benefit") == "mde")
    assert on_benefit["billed_cost"].sum() == pytest.approx(benefit_rows["cost"].sum(), abs=1e-9)
    assert set(on_benefit["resource_id"]) == set(estate.benefit_machines()["resource_id"])
    # The workspace's charge (case 5) stays unattributed, as a non-machine resource.
    unattributed = charges.filter(pl.col("attribution") == "unattributed")
    workspace = defender_rows.filter(
        pl.col("resource_id").is_in(estate.non_machine_charges()["resource_id"].implode())
    )
    assert workspace.height == len(estate.non_machine_charges()) > 0
    # So do the AWS connector's charge and the directly onboarded servers' (case 11).
    assert set(unattributed["attribution_detail"]) == {
        "non_machine_resource",
        "connector",
        "direct_onboarding",
    }
    assert unattributed["billed_cost"].sum() == pytest.approx(workspace["cost"].sum(), abs=1e-9)
    on_connector = unattributed.filter(pl.col("attribution_detail") == "connector")
    assert set(on_connector["charged_resource_id"]) == {
        c.arm_id.lower() for c in estate.connector_specs if c.cloud == "aws"
    }
    # The Arc server also billed as directly onboarded is the only duplicate_onboarding.
    duplicates = views["findings"].filter(pl.col("finding") == "duplicate_onboarding")
    assert duplicates["resource_id"].to_list() == [
        t.machine.arm_id.lower()
        for t in estate.timelines
        if t.machine.name == cases.DUPLICATED_SERVER
    ]

    planted = {
        (row["finding"], row["resource_id"], row["usage_date"].replace(day=1))
        for row in estate.anomalies().iter_rows(named=True)
    }
    # The move rule puts the gap day's hours on the new id while the cost data bills the old
    # id (it knows the true move): one such day, billed and billable. Findings judge a day per
    # machine (all its ids), so that day is neither billed-while-not-billable on the old id nor
    # billable-not-billed on the new one: only the planted errors are found.
    gap = moves.select("from_resource_id", "to_resource_id", usage_date="gap_days").explode(
        "usage_date"
    )
    billed_gap = (
        gap.join(
            defender_rows.select("usage_date", from_resource_id="resource_id"),
            on=["usage_date", "from_resource_id"],
        )
        .join(
            estate.billable_hours_daily().select(
                "usage_date", from_resource_id="resource_id", hours="billable_hours"
            ),
            on=["usage_date", "from_resource_id"],
        )
        .filter(pl.col("hours") > 0)
    )
    assert billed_gap.height == 1
    found = views["findings"].filter(
        pl.col("finding").is_in(["billed_while_not_billable", "billable_not_billed"])
    )
    assert {(r["finding"], r["resource_id"], r["month"]) for r in found.iter_rows(named=True)} == (
        planted
    )


def test_showback_adds_up_to_the_estate_bill_to_the_cent():
    """Every group key's rows of a month add up to the estate's billed cost, to the cent, on a
    simulated estate: untagged machines and charges on no machine (the workspaces) are groups of
    their own, never dropped."""
    from transforms.marts import MartOptions, build_marts
    from transforms.marts import RawLake as Lake

    estate = Estate.generate(seed=7, machines=40, months=2, now=NOW)
    days = (estate.now - estate.window_start).days
    clocks = [estate.window_start + timedelta(days=k) for k in range(days + 1)] + [estate.now]
    lake = SimulatedLake(estate, clocks)
    keys = ("tag:CostCenter", "resource_group", "subscription")
    views = build_marts(
        Lake(lake.inventory, lake.pricings, lake.power_events, lake.costs),
        lake.price_book,
        MartOptions("mde_for_servers", "USD", "fractional", group_by=keys),
    )
    estate_billed = views["fleet_comparison_monthly"].filter(pl.col("subscription_id").is_null())
    showback = views["showback_monthly"]
    sums = showback.group_by("month", "group_key").agg(pl.col("billed_cost").sum())
    joined = sums.join(estate_billed.select("month", "billed_cost"), on="month", suffix="_estate")
    assert joined.height == len(keys) * estate_billed.height > 0
    for row in joined.iter_rows(named=True):
        assert round(row["billed_cost"], 2) == round(row["billed_cost_estate"], 2), row
    # The workspaces' charges (cases 5 and 11) are the unattributed group of the tag key.
    unattributed = showback.filter(
        (pl.col("group_key") == "tag:CostCenter") & (pl.col("group_kind") == "unattributed")
    )["billed_cost"].sum()
    workspaces = views["defender_charges_daily"].filter(pl.col("attribution") == "unattributed")
    assert unattributed > 0
    assert unattributed == pytest.approx(workspaces["billed_cost"].sum(), abs=1e-9)
    # Machines whose tags lack a cost centre are a group of their own (costCenter is drawn for
    # three machines in four; scale-set instances carry none).
    assert (
        showback.filter(
            (pl.col("group_key") == "tag:CostCenter") & (pl.col("group_kind") == "missing")
        )["machines"].sum()
        > 0
    )
