"""The transforms against the simulated estate's ground truth (in process, no HTTP).

The simulator's timelines are the truth; it serves only what Azure would: inventory snapshots
(power state at an instant), Activity Log events and cost rows. Here those are turned into raw
lake frames directly (the collectors' job end to end is tested elsewhere), and the rebuilt
figures must equal the truth: billable hours to the microsecond, the machines' plans and
lifetimes, the money, and exactly the billing errors the simulator planted.
"""

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

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
            **provenance,
        )
        self._events = estate.activity_events().lazy().with_columns(**provenance)
        self._pricings = (
            estate.pricings()
            .lazy()
            .select(
                snapshot_at=pl.lit(estate.now).cast(TIMESTAMP),
                subscription_id="subscription_id",
                pricing_id=pl.lit("pricing"),
                level="level",
                resource_id="resource_id",
                pricing_tier="pricing_tier",
                sub_plan="sub_plan",
                inherited="inherited",
                inherited_from=pl.lit(None, dtype=pl.String),
                enablement_time=pl.lit(None, dtype=TIMESTAMP),
                free_trial_remaining=pl.lit(None, dtype=pl.Duration("us")),
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
    return estate, views


def test_billable_hours_equal_the_ground_truth_to_the_microsecond(simulated):
    estate, views = simulated
    truth = estate.billable_hours_daily()
    ours = views["machine_hours_daily"]
    compared = truth.join(
        ours, on=["usage_date", "resource_id"], how="full", coalesce=True, suffix="_ours"
    )
    assert compared.height == truth.height == ours.height
    assert (compared["subscription_id"] == compared["subscription_id_ours"]).all()
    difference = (compared["billable_hours"] - compared["billable_hours_ours"]).abs()
    assert difference.max() < 1e-9  # 3.6 microseconds


def test_machines_have_the_true_plan_and_lifetime(simulated):
    estate, views = simulated
    truth = estate.machines().select("resource_id", "defender_plan", "deleted_at", "created_at")
    ours = views["machines"].select("resource_id", "defender_plan", "deleted_at", "created_at")
    assert ours.sort("resource_id").equals(truth.sort("resource_id"))


def test_money_is_conserved_and_only_the_planted_billing_errors_are_found(simulated):
    estate, views = simulated
    defender_rows = estate.cost_rows().filter(pl.col("meter").str.ends_with(" Node"))
    billed = views["defender_charges_daily"]["billed_cost"].sum()
    assert billed == pytest.approx(defender_rows["cost"].sum(), abs=1e-9)

    planted = {
        (row["finding"], row["resource_id"], row["usage_date"].replace(day=1))
        for row in estate.anomalies().iter_rows(named=True)
    }
    found = views["findings"].filter(
        pl.col("finding").is_in(["billed_while_not_billable", "billable_not_billed"])
    )
    assert {(r["finding"], r["resource_id"], r["month"]) for r in found.iter_rows(named=True)} == (
        planted
    )
