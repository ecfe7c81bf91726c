"""The warehouse contract: declared once, documented column by column, enforced on every view."""

import re
from datetime import date

import polars as pl
import pytest

from tests.transforms.conftest import SUB_A, RawLake, build_views, vm_id
from transforms.contract import VIEWS, ContractError, conform_view, view_schema

# DESIGN.md's key columns per view: the names analysts rely on (additions are allowed).
DESIGN_KEY_COLUMNS = {
    "machines": "resource_id, subscription_id, resource_group, machine_name, machine_kind, "
    "location, size, os_type, created_at, deleted_at, mde_sensor, defender_plan",
    "power_intervals": "resource_id, state, start_at, end_at, billable",
    "machine_hours_daily": "usage_date, resource_id, subscription_id, billable_hours",
    "machine_plans_daily": "usage_date, resource_id, plan, plan_source",
    "defender_charges_daily": "usage_date, subscription_id, resource_id, plan, billed_hours, "
    "billed_cost, currency, attribution",
    "licensing_comparison_monthly": "month, subscription_id, resource_id, machine_name, "
    "machine_kind, plan, billable_hours, hours_in_month, utilization, billed_hours, billed_cost, "
    "hourly_cost, seat_option, seat_cost, per_hour_savings, break_even_utilization, cheaper, "
    "currency",
    "fleet_comparison_monthly": "month, subscription_id, machines_distinct, "
    "peak_concurrent_machines, billable_hours, hourly_cost, billed_cost, seat_cost_distinct, "
    "seat_cost_peak, currency",
    "licensing_options_monthly": "month, subscription_id, plan, option, seat_rule, seats, cost, "
    "cost_vs_billed, month_complete, eligible, eligibility_note, currency",
    "findings": "resource_id, month, finding, detail, amount, currency",
    "showback_monthly": "month, group_key, group_value, machines, billable_hours, billed_cost, "
    "allocated_cost, like_for_like_cost, currency",
}


def test_every_design_column_is_declared_and_described():
    assert set(VIEWS) == set(DESIGN_KEY_COLUMNS)
    for view, spec in VIEWS.items():
        assert spec["grain"]
        for name in DESIGN_KEY_COLUMNS[view].split(", "):
            assert name in spec["columns"], f"{view}.{name}"
        for name, (dtype, description) in spec["columns"].items():
            assert re.fullmatch(r"[a-z][a-z0-9_]*", name), f"{view}.{name}"
            assert isinstance(dtype, pl.DataType)
            assert description.endswith("."), f"{view}.{name}: {description!r}"


def test_conform_view_refuses_drift_and_types_all_null_columns():
    frame = pl.LazyFrame(
        {"resource_id": ["x"], "state": ["running"], "start_at": [None], "end_at": [None]}
    )
    with pytest.raises(ContractError, match="power_intervals: missing column"):
        conform_view(frame, "power_intervals")
    with pytest.raises(ContractError, match="unexpected column"):
        conform_view(frame.with_columns(billable=True, extra=1), "power_intervals")
    with pytest.raises(ContractError, match="column billable is String, expected Boolean"):
        conform_view(frame.with_columns(billable=pl.lit("yes")), "power_intervals")
    conformed = conform_view(frame.with_columns(billable=True), "power_intervals")
    assert conformed.collect_schema() == view_schema("power_intervals")


def test_empty_lake_builds_every_view_empty_with_its_schema():
    lake = RawLake()
    lake.price("defender_servers_p2", 0.02, date(2025, 1, 1))
    lake.price("mde_for_servers", 3.0, date(2025, 1, 1))
    views = build_views(lake, window_end=None)
    for name, frame in views.items():
        assert frame.schema == view_schema(name), name
        assert frame.is_empty(), name


def test_views_of_a_small_estate_have_their_schemas():
    lake = RawLake()
    lake.machine(vm_id(SUB_A, "rg", "web"))
    lake.pricing(SUB_A, "Standard", "P2")
    lake.price("defender_servers_p2", 0.02, date(2025, 1, 1))
    lake.price("mde_for_servers", 3.0, date(2025, 1, 1))
    lake.cost(date(2026, 1, 2), vm_id(SUB_A, "rg", "web"), hours=24, amount=0.48)
    for name, frame in build_views(lake).items():
        assert frame.schema == view_schema(name), name
        assert not frame.is_empty(), name
