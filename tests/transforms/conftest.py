"""A builder for small hand-made raw lakes (inventory, events, costs, pricings, price book).

Golden tests describe an estate in a few lines and work out the expected figures by hand; the
builder turns it into LazyFrames with exactly the raw lake schemas (`schemas.conform` checks
them), so the transforms are tested on what the collectors really write.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pyarrow as pa
import pytest

from transforms import schemas
from transforms.options import LicensingTerms

SUB_A = "aaaaaaaa-0000-0000-0000-000000000001"
SUB_B = "bbbbbbbb-0000-0000-0000-000000000002"


def at(day: int, hour: int = 0, minute: int = 0, month: int = 1, year: int = 2026) -> datetime:
    """A UTC instant; January 2026 by default (31 days, starts on a Thursday)."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def vm_id(subscription: str, resource_group: str, name: str) -> str:
    """An ARM id spelled the way Compute spells it (mixed case)."""
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
        f"Microsoft.Compute/virtualMachines/{name}"
    )


def vmss_instance_id(subscription: str, resource_group: str, scale_set: str, index: int) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
        f"Microsoft.Compute/virtualMachineScaleSets/{scale_set}/virtualMachines/{index}"
    )


def pricing_id(subscription: str) -> str:
    return f"/subscriptions/{subscription}/providers/Microsoft.Security/pricings/VirtualMachines"


class RawLake:
    """Rows of every raw dataset, added one fact at a time."""

    def __init__(self, snapshot_at: datetime = at(1, month=2)) -> None:
        self.snapshot_at = snapshot_at
        self._ids = itertools.count()
        self.inventory_rows: list[dict] = []
        self.event_rows: list[dict] = []
        self.cost_rows: list[dict] = []
        self.pricing_rows: list[dict] = []
        self.book_rows: list[dict] = []
        self._vm_ids: dict[str, str] = {}

    def _provenance(self, subscription: str) -> dict:
        return {
            "ingested_at": self.snapshot_at,
            "source": "test",
            "scope": f"/subscriptions/{subscription}",
        }

    def machine(
        self,
        resource_id: str,
        *,
        power_state: str | None = "running",
        created_at: datetime | None = at(1, year=2025),
        vm_id: str | None = None,
        kind: str | None = None,
        mde_sensor: bool = True,
        snapshot_at: datetime | None = None,
        provider: str | None = None,
        status_changed_at: datetime | None = None,
    ) -> str:
        """A machine listed in an inventory snapshot (the latest one unless `snapshot_at`).

        Listing the same id again adds another snapshot of it (same vmId unless given)."""
        parts = resource_id.split("/")
        subscription, resource_group = parts[2], parts[4]
        is_instance = "virtualMachineScaleSets" in resource_id
        self.inventory_rows.append(
            {
                "snapshot_at": snapshot_at or self.snapshot_at,
                "resource_id": resource_id,
                "subscription_id": subscription,
                "resource_group": resource_group,
                "machine_name": f"{parts[-3]}_{parts[-1]}" if is_instance else parts[-1],
                "machine_kind": kind or ("vmss_instance" if is_instance else "vm"),
                "vm_id": vm_id or self._vm_ids.setdefault(resource_id, f"vmid-{next(self._ids)}"),
                "scale_set_name": parts[-3] if is_instance else None,
                "location": "westeurope",
                "size": "Standard_D2s_v5",
                "os_type": "Linux",
                "tags": None,
                "created_at": created_at,
                "power_state": power_state,
                "mde_sensor": mde_sensor,
                "mde_extension_type": "MDE.Linux" if mde_sensor else None,
                "provider": provider,
                "status_changed_at": status_changed_at,
                **self._provenance(subscription),
            }
        )
        return resource_id

    def operation(
        self,
        resource_id: str,
        operation: str,
        started_at: datetime,
        ended_at: datetime | None,
        *,
        outcome: str = "Succeeded",
        operation_name: str | None = None,
    ) -> None:
        """One Activity Log operation: Started, Accepted, then `outcome` at `ended_at` (None:
        still in progress). `operation_name` defaults to the VM operation of that verb."""
        parts = resource_id.split("/")
        correlation = f"corr-{next(self._ids)}"
        steps = [("Started", started_at), ("Accepted", started_at + timedelta(seconds=1))]
        if ended_at is not None:
            steps.append((outcome, ended_at))
        for status, event_at in steps:
            self.event_rows.append(
                {
                    "event_data_id": f"event-{next(self._ids)}",
                    "correlation_id": correlation,
                    "event_at": event_at,
                    "resource_id": resource_id,
                    "subscription_id": parts[2],
                    "resource_group": parts[4],
                    "operation_name": operation_name
                    or f"Microsoft.Compute/virtualMachines/{operation}",
                    "operation": operation,
                    "status": status,
                    **self._provenance(parts[2]),
                }
            )

    def cost(
        self,
        day: date,
        resource_id: str | None,
        *,
        hours: float,
        amount: float,
        meter: str = "Standard P2 Node",
        subscription: str | None = SUB_A,
        currency: str = "USD",
        description: str | None = None,
        cost_type: str = "ActualCost",
    ) -> None:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        self.cost_rows.append(
            {
                "charge_period_start": start,
                "charge_period_end": start + timedelta(days=1),
                "subscription_id": subscription,
                "sub_account_id": f"/subscriptions/{subscription}" if subscription else None,
                "resource_id": resource_id,
                "resource_type": None,
                "service_name": "Virtual Machines",
                "meter_category": "Microsoft Defender for Cloud",
                "meter_subcategory": None,
                "sku_meter": meter,
                "charge_description": description,
                "charge_category": "Usage",
                "consumed_quantity": hours,
                "consumed_unit": "Hours",
                "x_unit_of_measure": "1/Hour",
                "billed_cost": amount,
                "effective_cost": amount,
                "billing_currency": currency,
                "cost_type": cost_type,
                "cost_source": "query",
                **self._provenance(subscription or "unknown"),
            }
        )

    def pricing(
        self,
        subscription: str,
        tier: str,
        sub_plan: str | None = None,
        *,
        resource_id: str | None = None,
        snapshot_at: datetime | None = None,
        enablement_time: datetime | None = None,
        trial_remaining: timedelta | None = None,
    ) -> None:
        """A pricings row of the snapshot taken at `snapshot_at` (default: the latest)."""
        level = "resource" if resource_id else "subscription"
        self.pricing_rows.append(
            {
                "snapshot_at": snapshot_at or self.snapshot_at,
                "subscription_id": subscription,
                "pricing_id": f"{resource_id or '/subscriptions/' + subscription}"
                "/providers/Microsoft.Security/pricings/VirtualMachines",
                "level": level,
                "resource_id": resource_id,
                "pricing_tier": tier,
                "sub_plan": sub_plan,
                "inherited": False if resource_id else None,
                "inherited_from": None,
                "enablement_time": enablement_time,
                "free_trial_remaining": trial_remaining,
                **self._provenance(subscription),
            }
        )

    def price(
        self,
        option: str,
        rate: float,
        effective_from: date,
        effective_to: date | None = None,
        *,
        currency: str = "USD",
    ) -> None:
        seat = option in ("mde_for_servers", "defender_business_servers")
        self.book_rows.append(
            {
                "option": option,
                "kind": "seat" if seat else "hourly",
                "unit": "1/Month" if seat else "1/Hour",
                "rate": rate,
                "currency": currency,
                "effective_from": effective_from,
                "effective_to": effective_to,
                "source": "test",
            }
        )

    @staticmethod
    def _frame(rows: list[dict], dataset: str) -> pl.LazyFrame:
        schema = schemas.DATASETS[dataset]
        table = schemas.conform(pa.Table.from_pylist(rows, schema=schema), dataset, "test")
        return pl.from_arrow(table).lazy()

    @property
    def inventory(self) -> pl.LazyFrame:
        return self._frame(self.inventory_rows, "inventory")

    @property
    def power_events(self) -> pl.LazyFrame:
        return self._frame(self.event_rows, "power_events")

    @property
    def costs(self) -> pl.LazyFrame:
        return self._frame(self.cost_rows, "costs")

    @property
    def pricings(self) -> pl.LazyFrame:
        return self._frame(self.pricing_rows, "pricings")

    @property
    def price_book(self) -> pl.LazyFrame:
        table = pa.Table.from_pylist(self.book_rows, schema=schemas.PRICE_BOOK)
        return pl.from_arrow(table).lazy()


def hours_daily(rows: list[tuple[date, str, float]]) -> pl.LazyFrame:
    """A `machine_hours_daily` frame from (day, machine id, billable hours) rows."""
    return pl.LazyFrame(
        {
            "usage_date": [day for day, _, _ in rows],
            "resource_id": [resource_id.lower() for _, resource_id, _ in rows],
            "subscription_id": [resource_id.split("/")[2] for _, resource_id, _ in rows],
            "billable_hours": [hours for _, _, hours in rows],
        },
        schema={
            "usage_date": pl.Date,
            "resource_id": pl.String,
            "subscription_id": pl.String,
            "billable_hours": pl.Float64,
        },
    )


def build_views(
    lake: RawLake,
    *,
    window_start: datetime = at(1),
    window_end: datetime | None = at(1, month=2),
    seat_option: str = "mde_for_servers",
    currency: str = "USD",
    seats_owned: dict[str, int] | None = None,
    partial_hours: str = "fractional",
    terms: LicensingTerms | None = None,
) -> dict[str, pl.DataFrame]:
    """Every warehouse view of `lake`, wired as the warehouse build wires them, collected.

    Each view is materialised before the next one uses it, as the build does (it writes each
    to the warehouse): chaining the seven lazy plans would make polars re-plan every shared
    upstream step once per use.
    """
    from transforms.billing import FINDINGS_TOLERANCE_HOURS
    from transforms.charges import defender_charges_daily
    from transforms.comparison import fleet_comparison_monthly, licensing_comparison_monthly
    from transforms.findings import findings
    from transforms.machines import machines
    from transforms.plans import machine_days, machine_plans_daily, pricing_coverage
    from transforms.power import machine_hours_daily, power_intervals

    views: dict[str, pl.DataFrame] = {}

    def keep(name: str, frame: pl.LazyFrame) -> pl.LazyFrame:
        views[name] = frame.collect()
        return views[name].lazy()

    intervals = keep(
        "power_intervals",
        power_intervals(
            lake.inventory, lake.power_events, window_start=window_start, window_end=window_end
        ),
    )
    machine_view = keep("machines", machines(lake.inventory, lake.power_events, lake.pricings))
    hours = keep(
        "machine_hours_daily",
        machine_hours_daily(intervals, machine_view, partial_hours=partial_hours),
    )
    coverage = pricing_coverage(hours, lake.pricings).collect().lazy()
    charges = keep("defender_charges_daily", defender_charges_daily(lake.costs, hours, coverage))
    days = machine_days(coverage, charges, currency).collect().lazy()
    plans = keep("machine_plans_daily", machine_plans_daily(days))
    pricing = {"seat_option": seat_option, "currency": currency}
    licensing = keep(
        "licensing_comparison_monthly",
        licensing_comparison_monthly(machine_view, days, charges, lake.price_book, **pricing),
    )
    keep(
        "fleet_comparison_monthly",
        fleet_comparison_monthly(
            machine_view, days, intervals, charges, lake.price_book, **pricing
        ),
    )
    keep(
        "findings",
        findings(
            machine_view,
            hours,
            charges,
            plans,
            intervals,
            licensing,
            lake.price_book,
            currency=currency,
            seats_owned=seats_owned,
            terms=terms,
            tolerance_hours=FINDINGS_TOLERANCE_HOURS[partial_hours],
        ),
    )
    return views


@pytest.fixture
def lake() -> RawLake:
    return RawLake()
