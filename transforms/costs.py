"""Cost rows from the Cost Management Query API or from export files, as the `costs` dataset.

Pure transformations: each function takes rows or a lazy frame of the source's own columns and
returns a lazy frame in the columns of `transforms.schemas.COSTS`; `to_costs_table` collects one
into the declared Arrow schema. Nothing here reads a file or calls Azure (the shipped pricing
units table is package data, read once).

Conventions shared by every source (DESIGN.md "costs"):
- `charge_period_start`/`_end` are UTC, half-open: a daily row covers [day 00:00, next day 00:00).
- `resource_id` is lower-cased and stripped by `billing.normalise_resource_id_expr`;
  `subscription_id` is the bare lower-case GUID and `sub_account_id` is `/subscriptions/<guid>`.
- `resource_type` is the lower-case ARM type (`microsoft.compute/virtualmachines`): the source's
  own when it has one, otherwise read from the resource id (export cost details carry none).
- `consumed_quantity` is the source quantity divided by the pricing block size of
  `x_unit_of_measure` (`100 Hours` -> /100), as DESIGN.md and BILLING-FACTS.md require and as
  Microsoft documents it (FinOps toolkit "Convert to FOCUS": PricingQuantity = Quantity /
  x_PricingBlockSize; "Quantity in Cost Management is the consumed (usage) quantity").
  Uncertain in the real world: in the toolkit's own EA samples, rows in `10K` units have
  Cost = Quantity x EffectivePrice with a price per 10,000 (GRS list operations at 0.10), which
  suggests those quantities are already counted in blocks. Every Defender for Servers and VM
  hour meter is `1/Hour` or `1 Hour` (block size 1), so the comparison does not depend on it;
  `x_unit_of_measure` is kept so the original quantity can always be recovered.
- `consumed_unit` is the source's ConsumedUnit (FOCUS) or, like Microsoft's FOCUS conversion,
  the distinct unit of `x_unit_of_measure` from PricingUnits.csv (cost details, Query API).
- Money: Query API results and cost-details files carry one cost per row, the cost of the view
  they were asked for; it fills both `billed_cost` and `effective_cost`, and `cost_type`
  (`ActualCost` / `AmortizedCost`) says which view that is. FOCUS rows carry both costs
  (`cost_type` = `FocusCost`). Never add rows of different cost types together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import polars as pl
import pyarrow as pa

from pricing.units import pricing_units, unit_key
from transforms.billing import DEFENDER_METERS, DEFENDER_UNIT, normalise_resource_id_expr
from transforms.schemas import COSTS, conform

UTC_DATETIME: Final = pl.Datetime("us", "UTC")
COST_TYPES: Final = ("ActualCost", "AmortizedCost")
FOCUS_COST_TYPE: Final = "FocusCost"
QUERY_SOURCE: Final = "query"
EXPORT_SOURCE: Final = "export"

_GUID: Final = r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"
_BILLING_ACCOUNT_SCOPE: Final = "/providers/Microsoft.Billing/billingAccounts/"

# Cost Management ChargeType -> FOCUS ChargeCategory (FinOps toolkit "Convert to FOCUS": Usage,
# Purchase, Credit, Tax unchanged; unused commitments are Usage; Refund is a Purchase
# correction; anything else, e.g. RoundingAdjustment, is an Adjustment).
_CHARGE_CATEGORY: Final = {
    "usage": "Usage",
    "purchase": "Purchase",
    "credit": "Credit",
    "tax": "Tax",
    "unusedreservation": "Usage",
    "unusedsavingsplan": "Usage",
    "refund": "Purchase",
}


class CostDataError(ValueError):
    """Cost data that cannot be normalised: a missing column, an unparsable value, a bad mix."""


# --- plausibility ---------------------------------------------------------------------------
# `float()` reads `NaN`, `inf` and `1e309` (infinite) as numbers, and one absurd row (1e27) makes
# every sum meaningless. No single charge or quantity row of any estate comes near 1e12 in any
# currency (a trillion yen is seven billion dollars), so one at or beyond it is refused.
MAX_ROW_AMOUNT: Final = 1e12
AMOUNT_COLUMNS: Final = ("billed_cost", "effective_cost", "consumed_quantity")
# Azure cost data starts well after 2010; a date before it, or after next year, is a misread
# date format or a corrupt file, not a charge.
EARLIEST_CHARGE_YEAR: Final = 2010
# What no id is: text a spreadsheet would run as a formula, or holding control characters.
# Such a value in ResourceId / SubscriptionId / SubAccountId is an attack on whoever opens the
# report, and matches no machine anyway.
_UNSAFE_ID: Final = r"^[=+\-@\t\r]|[\x00-\x1f\x7f]"
# An ARM id: `/subscriptions/<guid>...` or a tenant-level `/providers/...`.
_ARM_ID: Final = rf"(?i)^/(?:subscriptions/{_GUID}(?:/|$)|providers/)"


def implausible_amount(value: pl.Expr) -> pl.Expr:
    """True where `value` is NaN, infinite or at least `MAX_ROW_AMOUNT` in magnitude."""
    return value.is_not_null() & (~value.is_finite() | (value.abs() >= MAX_ROW_AMOUNT))


def implausible_day(day: pl.Expr, latest_year: int) -> pl.Expr:
    """True where a charge date is before `EARLIEST_CHARGE_YEAR` or after `latest_year`."""
    year = day.dt.year()
    return day.is_not_null() & ((year < EARLIEST_CHARGE_YEAR) | (year > latest_year))


def unsafe_id(text: pl.Expr) -> pl.Expr:
    """True where an id starts like a spreadsheet formula or holds a control character."""
    return text.is_not_null() & text.str.contains(_UNSAFE_ID)


def non_arm_ids(costs: pl.LazyFrame) -> list[str]:
    """The distinct resource ids of `costs` that are not ARM ids (other clouds' rows in a FOCUS
    file, or damaged ids): kept, as they match no machine, and listed for the user."""
    found = (
        costs.select(pl.col("resource_id").drop_nulls().unique())
        .filter(~pl.col("resource_id").str.contains(_ARM_ID))
        .collect()
    )
    return sorted(found["resource_id"])


# --- shared finishing ---------------------------------------------------------------------
# Every source is first "staged" into the COSTS columns, except that `quantity` (not yet divided
# by the block size) and `block_size` (null unless the source states it) stand in for
# `consumed_quantity`, and ids are still as the source spelled them; `_finish` does the rest.


def _units_frame(units: pl.DataFrame | None) -> pl.DataFrame:
    return pricing_units() if units is None else units


def _unit_lookup(
    unit: pl.Expr, units: pl.DataFrame, column: str, dtype: type[pl.DataType]
) -> pl.Expr:
    """Vectorised look-up of `column` of the pricing units table for a unit-of-measure column."""
    return unit_key(unit).replace_strict(
        units["unit_key"], units[column], default=None, return_dtype=dtype
    )


def resource_type_from_id(resource_id: pl.Expr) -> pl.Expr:
    """The lower-case ARM resource type named by a resource id, or null if it names none.

    The type is the namespace after the last `/providers/` and every second segment after it:
    `.../providers/Microsoft.Compute/virtualMachineScaleSets/ss/virtualMachines/0` is
    `microsoft.compute/virtualmachinescalesets/virtualmachines`.
    """
    segments = resource_id.str.to_lowercase().str.extract(r".*/providers/(.+)$").str.split("/")
    return (
        pl.when(segments.list.len() >= 2)
        .then(
            pl.concat_str(
                segments.list.first(),
                pl.lit("/"),
                segments.list.gather_every(2, offset=1).list.join("/"),
            )
        )
        .otherwise(None)
    )


def subscription_from_sub_account(sub_account: pl.Expr) -> pl.Expr:
    """The lower-case subscription GUID of `/subscriptions/<guid>` or of a bare GUID, else null."""
    return (
        sub_account.str.strip_chars()
        .str.strip_chars_end("/")
        .str.extract(rf"(?i)^(?:/subscriptions/)?({_GUID})$")
        .str.to_lowercase()
    )


def billing_account_scope(billing_account_id: pl.Expr) -> pl.Expr:
    """A cost-details billing account id as an ARM scope (`/providers/Microsoft.Billing/...`).

    EA files give the bare enrollment number (`8611537`), Microsoft's FOCUS files the full scope
    (`/providers/Microsoft.Billing/billingAccounts/8611537`); both end as the same scope, so one
    account's exports land in one place whatever their layout.
    """
    stripped = billing_account_id.str.strip_chars().str.strip_chars_end("/")
    return (
        pl.when(stripped.str.len_chars() == 0)
        .then(None)
        .when(stripped.str.starts_with("/"))
        .then(stripped)
        .otherwise(pl.concat_str(pl.lit(_BILLING_ACCOUNT_SCOPE), stripped))
    )


def _non_blank(text: pl.Expr) -> pl.Expr:
    stripped = text.str.strip_chars()
    return pl.when(stripped.str.len_chars() > 0).then(stripped)


def charge_category_from_charge_type(charge_type: pl.Expr) -> pl.Expr:
    """FOCUS ChargeCategory for a Cost Management ChargeType (null stays null)."""
    lowered = charge_type.str.strip_chars().str.to_lowercase()
    return (
        pl.when(lowered.is_null())
        .then(None)
        .otherwise(
            lowered.replace_strict(
                list(_CHARGE_CATEGORY),
                list(_CHARGE_CATEGORY.values()),
                default="Adjustment",
                return_dtype=pl.String,
            )
        )
    )


def parse_number(text: pl.Expr, *, strict: bool = True) -> pl.Expr:
    """A decimal string (`"0.00004"`, `"6.96E-9"`, ` 24 `) as float64; blank is null; anything
    else fails loudly.

    The cast is strict: polars raises naming the column and the offending value, and
    `to_costs_table` reports it with the file or request it came from (`strict=False` gives null
    instead: `first_unreadable_value` uses it to find the row).
    """
    return _non_blank(text).cast(pl.Float64, strict=strict)


def parse_day(text: pl.Expr, *, strict: bool = True) -> pl.Expr:
    """A cost-details date (`MM/DD/YYYY`, or ISO `YYYY-MM-DD[...]`) as the UTC midnight starting it.

    Cost Management writes US month-first dates in CSV cost details; a day-first file cannot be
    told apart from its header and is not supported (a day above 12 fails loudly, but a file
    whose days are all <= 12 would be misread: only Microsoft's own format is accepted).
    """
    iso = text.str.strip_chars().str.replace(r"^(\d{1,2})/(\d{1,2})/(\d{4})", "${3}-${1}-${2}")
    return (
        iso.str.slice(0, 10)
        .str.to_date("%Y-%m-%d", strict=strict)
        .cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC")
    )


def parse_utc_timestamp(text: pl.Expr, *, strict: bool = True) -> pl.Expr:
    """A FOCUS date-time (`2024-09-04T00:00:00Z`, `2024-09-04 00:00:00`, `...+00:00`) in UTC.

    FOCUS requires UTC date-times; values with another offset are refused (strict parse), as
    are fractions of a second, which no daily or hourly charge period has.
    """
    canonical = (
        text.str.strip_chars()
        .str.replace(r"^(\d{4}-\d{2}-\d{2})$", "${1} 00:00:00")
        .str.replace(
            r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.0+)?(?:Z|\+00:?00)?$", "${1} ${2}"
        )
    )
    return canonical.str.to_datetime(
        "%Y-%m-%d %H:%M:%S", time_unit="us", time_zone="UTC", strict=strict
    )


def _finish(staged: pl.LazyFrame, units: pl.DataFrame) -> pl.LazyFrame:
    """Staged rows -> COSTS columns: block-size normalisation, normalised ids, final types."""
    block_size = pl.coalesce(
        pl.col("block_size"),
        _unit_lookup(pl.col("x_unit_of_measure"), units, "pricing_block_size", pl.Float64),
        pl.lit(1.0),
    )
    resource_id = normalise_resource_id_expr(pl.col("resource_id"))
    subscription_id = pl.col("subscription_id").str.strip_chars().str.to_lowercase()
    return staged.select(
        pl.col("charge_period_start").cast(UTC_DATETIME),
        pl.col("charge_period_end").cast(UTC_DATETIME),
        subscription_id.alias("subscription_id"),
        pl.when(subscription_id.is_not_null())
        .then(pl.concat_str(pl.lit("/subscriptions/"), subscription_id))
        .otherwise(pl.col("sub_account_id"))
        .alias("sub_account_id"),
        resource_id.alias("resource_id"),
        pl.coalesce(
            pl.col("resource_type").str.strip_chars().str.to_lowercase(),
            resource_type_from_id(resource_id),
        ).alias("resource_type"),
        pl.col("service_name"),
        pl.col("meter_category"),
        pl.col("meter_subcategory"),
        pl.col("sku_meter"),
        pl.col("charge_description"),
        pl.col("charge_category"),
        (pl.col("quantity") / block_size).alias("consumed_quantity"),
        pl.coalesce(
            pl.col("consumed_unit"),
            _unit_lookup(pl.col("x_unit_of_measure"), units, "distinct_units", pl.String),
        ).alias("consumed_unit"),
        pl.col("x_unit_of_measure"),
        pl.col("billed_cost").cast(pl.Float64),
        pl.col("effective_cost").cast(pl.Float64),
        # Blank is null, so a row without a currency is refused (non-nullable), not "".
        _non_blank(pl.col("billing_currency")).str.to_uppercase().alias("billing_currency"),
        pl.col("cost_type"),
        pl.col("cost_source"),
        # Known only to the caller that read the rows in a tenant (`to_costs_table`).
        pl.lit(None, pl.String).alias("tenant_id"),
        pl.col("ingested_at").cast(UTC_DATETIME),
        pl.col("source"),
        pl.col("scope"),
    )


def unknown_units(costs: pl.LazyFrame, units: pl.DataFrame | None = None) -> list[str]:
    """Units of measure in `costs` that PricingUnits.csv does not know (block size 1 assumed).

    A FOCUS file that states `x_PricingBlockSize` was divided by its own figure; its unknown
    unit strings are still listed, so the shipped table can be brought up to date.
    """
    known = _units_frame(units)["unit_key"]
    found = (
        costs.select(pl.col("x_unit_of_measure").drop_nulls().unique())
        .filter(~unit_key(pl.col("x_unit_of_measure")).is_in(known.implode()))
        .collect()
    )
    return sorted(found["x_unit_of_measure"])


def to_costs_table(
    costs: pl.LazyFrame,
    origin: str,
    *,
    latest_year: int | None = None,
    tenant_id: str | None = None,
) -> pa.Table:
    """Collect a costs frame into the exact Arrow schema of the `costs` dataset; with
    `tenant_id` (the Entra tenant the rows were read in), every row says that tenant.

    A value that cannot be parsed surfaces here, when the frame is computed: it is reported as a
    CostDataError naming `origin` (the file or request) and polars' description of the column
    and value. So is a cost or quantity that is not finite or is absurd (`implausible_amount`),
    from any source, and with `latest_year` a charge dated outside [2010, latest_year]. The
    result is checked by `schemas.conform`.
    """
    if tenant_id:
        costs = costs.with_columns(tenant_id=pl.lit(tenant_id.lower(), pl.String))
    try:
        frame = costs.collect()
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise CostDataError(f"{origin}: cannot read cost data: {first_line}") from error
    for column in AMOUNT_COLUMNS:
        bad = frame.filter(implausible_amount(pl.col(column)))[column]
        if len(bad):
            raise CostDataError(
                f"{origin}: {column} {bad[0]!r} is not a plausible amount (NaN, infinite, or "
                f"{MAX_ROW_AMOUNT:.0e} or more in magnitude)"
            )
    if latest_year is not None:
        early = frame.filter(implausible_day(pl.col("charge_period_start"), latest_year))
        if early.height:
            raise CostDataError(
                f"{origin}: a charge dated {early['charge_period_start'][0]:%Y-%m-%d}, outside "
                f"{EARLIEST_CHARGE_YEAR}..{latest_year}"
            )
    table = frame.to_arrow()
    columns = [table.column(field.name).cast(field.type) for field in COSTS]
    return conform(pa.Table.from_arrays(columns, names=COSTS.names), "costs", origin)


# --- Cost Management Query API --------------------------------------------------------------
QUERY_COST_COLUMNS: Final = ("Cost", "PreTaxCost")
# Columns a result cannot be understood without; dimensions not listed are optional (null).
QUERY_REQUIRED_COLUMNS: Final = ("UsageDate", "Currency", "UsageQuantity", "ResourceId", "Meter")
QUERY_DIMENSIONS: Final = {
    "ResourceType": "resource_type",
    "ServiceName": "service_name",
    "MeterCategory": "meter_category",
    "MeterSubcategory": "meter_subcategory",
    "ChargeType": "charge_type",
    "UnitOfMeasure": "unit_of_measure",
}
# The subscription of each row, in a query asked above one subscription.
QUERY_SUBSCRIPTION_COLUMN: Final = "SubscriptionId"
# Costs converted to another currency are extra aggregations that cannot be mistaken for the
# billing-currency cost; they are left out.
_CONVERTED_COST: Final = re.compile(r"^(?:PreTax)?Cost[A-Z]{3}$")


def _query_column_names(columns: Sequence[Mapping[str, str]], origin: str) -> dict[str, str]:
    """Map each known Query API column (case-insensitively) to the name the result used."""
    names = [str(column["name"]) for column in columns]
    folded: dict[str, str] = {}
    for name in names:
        if name.lower() in folded:
            raise CostDataError(f"{origin}: the result has column {name!r} twice")
        folded[name.lower()] = name
    known = (
        *QUERY_COST_COLUMNS,
        *QUERY_REQUIRED_COLUMNS,
        *QUERY_DIMENSIONS,
        QUERY_SUBSCRIPTION_COLUMN,
    )
    return {
        canonical: folded[canonical.lower()] for canonical in known if canonical.lower() in folded
    }


def _refuse_harmful_extras(
    columns: Sequence[Mapping[str, str]], mapped: Mapping[str, str], origin: str
) -> None:
    """An extra String column is another grouping dimension: it only splits rows more finely,
    each still a disjoint slice of cost, so it is ignored. An extra Number (or date) column is
    another aggregation or time grain whose meaning cannot be checked: it is refused.
    """
    used = {name.lower() for name in mapped.values()}
    for column in columns:
        name, kind = str(column["name"]), str(column.get("type", "")).lower()
        if name.lower() in used or kind == "string" or _CONVERTED_COST.match(name):
            continue
        raise CostDataError(
            f"{origin}: unexpected {column.get('type')} column {name!r} in the Query API result;"
            " mdecost asks for Daily Cost and UsageQuantity grouped by dimensions only - check"
            " the query sent"
        )


def query_result_to_costs(
    columns: Sequence[Mapping[str, str]],
    rows: Sequence[Sequence[object]],
    *,
    subscription_id: str | None,
    cost_type: str,
    scope: str,
    ingested_at: datetime,
    origin: str,
    units: pl.DataFrame | None = None,
) -> pl.LazyFrame:
    """Rows of a Daily Cost Management Query API result as `costs` rows (lazy).

    `columns` and `rows` are `properties.columns` / `properties.rows` exactly as the API returns
    them (one page or all pages' rows together). Columns are found by name, in any order and
    any case; the cost column is `Cost` or `PreTaxCost` (named after the aggregated column, not
    the alias); `UsageDate` is a yyyymmdd number. Missing required columns are refused, naming
    them; so is a result with both `Cost` and `PreTaxCost` (which one is meant?). Optional
    dimensions absent from the result are null. See `_refuse_harmful_extras` for extras.

    Without a `UnitOfMeasure` column (the collector does not group by it), Defender for Servers
    meters are known to be `1/Hour` (billing facts) and other meters have no unit (block size 1).

    `subscription_id` None: a query above one subscription (billing account, management group),
    whose rows say their subscription in a `SubscriptionId` column (lower-cased here; a row
    without one is billed to no subscription and is refused by the schema).
    """
    if cost_type not in COST_TYPES:
        raise CostDataError(f"{origin}: cost_type must be one of {COST_TYPES}, got {cost_type!r}")
    if ingested_at.tzinfo is None:
        raise CostDataError(f"{origin}: ingested_at must be timezone-aware (UTC)")
    mapped = _query_column_names(columns, origin)
    if subscription_id is None:
        if QUERY_SUBSCRIPTION_COLUMN not in mapped:
            raise CostDataError(
                f"{origin}: a query above one subscription needs the {QUERY_SUBSCRIPTION_COLUMN} "
                "column to tell whose rows they are; the result has none"
            )
        subscription_of_row = (
            pl.col(mapped[QUERY_SUBSCRIPTION_COLUMN]).str.strip_chars().str.to_lowercase()
        )
    else:
        subscription = re.fullmatch(rf"(?:/subscriptions/)?({_GUID})/?", subscription_id.strip())
        if subscription is None:
            raise CostDataError(f"{origin}: {subscription_id!r} is not a subscription id")
        subscription_of_row = pl.lit(subscription.group(1), pl.String)
    cost_columns = [name for name in QUERY_COST_COLUMNS if name in mapped]
    missing = [name for name in QUERY_REQUIRED_COLUMNS if name not in mapped]
    if not cost_columns:
        missing.insert(0, " or ".join(QUERY_COST_COLUMNS))
    if missing:
        raise CostDataError(
            f"{origin}: the Query API result is missing column(s) {', '.join(missing)}"
            f" (it has {', '.join(str(c['name']) for c in columns) or 'none'})"
        )
    if len(cost_columns) > 1:
        raise CostDataError(
            f"{origin}: the result has both {' and '.join(cost_columns)}; ask for one cost"
        )
    _refuse_harmful_extras(columns, mapped, origin)

    dtypes = {
        str(column["name"]): pl.Float64
        if str(column.get("type")).lower() == "number"
        else pl.String
        for column in columns
    }
    try:
        frame = pl.DataFrame(rows, schema=list(dtypes.items()), orient="row")
    except (TypeError, ValueError, pl.exceptions.PolarsError) as error:
        raise CostDataError(f"{origin}: rows do not match the columns: {error}") from error

    def column(canonical: str) -> pl.Expr:
        return pl.col(mapped[canonical]) if canonical in mapped else pl.lit(None, pl.String)

    usage_date = pl.col(mapped["UsageDate"])
    if dtypes[mapped["UsageDate"]] == pl.Float64:
        day = (
            usage_date.cast(pl.Int64, strict=True)
            .cast(pl.String)
            .str.to_date("%Y%m%d", strict=True)
            .cast(pl.Datetime("us"))
            .dt.replace_time_zone("UTC")
        )
    else:
        day = parse_day(usage_date)
    meter = column("Meter")
    is_defender_meter = meter.str.strip_chars().str.to_lowercase().is_in(list(DEFENDER_METERS))
    cost = pl.col(mapped[cost_columns[0]]).cast(pl.Float64)
    staged = frame.lazy().select(
        day.alias("charge_period_start"),
        (day + timedelta(days=1)).alias("charge_period_end"),
        subscription_of_row.alias("subscription_id"),
        pl.lit(None, pl.String).alias("sub_account_id"),
        column("ResourceId").alias("resource_id"),
        column("ResourceType").alias("resource_type"),
        column("ServiceName").alias("service_name"),
        column("MeterCategory").alias("meter_category"),
        column("MeterSubcategory").alias("meter_subcategory"),
        meter.alias("sku_meter"),
        pl.lit(None, pl.String).alias("charge_description"),
        charge_category_from_charge_type(column("ChargeType")).alias("charge_category"),
        pl.col(mapped["UsageQuantity"]).cast(pl.Float64).alias("quantity"),
        pl.lit(None, pl.String).alias("consumed_unit"),
        pl.coalesce(
            column("UnitOfMeasure"), pl.when(is_defender_meter).then(pl.lit(DEFENDER_UNIT))
        ).alias("x_unit_of_measure"),
        pl.lit(None, pl.Float64).alias("block_size"),
        cost.alias("billed_cost"),
        cost.alias("effective_cost"),
        pl.col(mapped["Currency"]).alias("billing_currency"),
        pl.lit(cost_type).alias("cost_type"),
        pl.lit(QUERY_SOURCE).alias("cost_source"),
        pl.lit(ingested_at).cast(UTC_DATETIME).alias("ingested_at"),
        pl.lit(QUERY_SOURCE).alias("source"),
        pl.lit(scope).alias("scope"),
    )
    return _finish(staged, _units_frame(units))


# --- Export files ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportLayout:
    """A recognised export layout and where each field the transform needs sits in the header.

    `columns` maps a logical field (for example `cost`) to the header's own spelling of it.
    """

    name: str
    columns: Mapping[str, str]

    @property
    def is_focus(self) -> bool:
        return self.name.startswith("focus-")

    @property
    def source(self) -> str:
        return f"{EXPORT_SOURCE}:{self.name}"


class UnknownLayoutError(CostDataError):
    """An export file whose header matches no layout mdecost reads."""


# Logical field -> accepted spellings, first found wins. Matching ignores case: EA files spell
# `MeterName`, MCA files `meterName`.
_FOCUS_REQUIRED: Final = {
    "charge_period_start": ("ChargePeriodStart",),
    "charge_period_end": ("ChargePeriodEnd",),
    "billed_cost": ("BilledCost",),
    "effective_cost": ("EffectiveCost",),
    "billing_currency": ("BillingCurrency",),
    "charge_category": ("ChargeCategory",),
    "charge_description": ("ChargeDescription",),
    "consumed_quantity": ("ConsumedQuantity",),
    "consumed_unit": ("ConsumedUnit",),
    "resource_id": ("ResourceId",),
    "service_name": ("ServiceName",),
    "sub_account_id": ("SubAccountId",),
}
_FOCUS_OPTIONAL: Final = {
    "billing_account_id": ("BillingAccountId",),
    "sku_meter": ("SkuMeter", "x_SkuMeterName"),
    "meter_category": ("x_SkuMeterCategory",),
    "meter_subcategory": ("x_SkuMeterSubcategory",),
    "resource_type": ("x_ResourceType",),
    "unit_of_measure": ("x_PricingUnitDescription",),
    "block_size": ("x_PricingBlockSize",),
}
# Columns FOCUS added after 1.0 (present in Microsoft's FocusCost 1.2 export, absent from 1.0:
# finops-toolkit schemas focuscost_1.0.json vs focuscost_1.2.json). A file with any of them is
# labelled `focus-1.2`, otherwise `focus-1.0`.
_FOCUS_AFTER_1_0: Final = (
    "CapacityReservationId",
    "CapacityReservationStatus",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountUnit",
    "InvoiceId",
    "PricingCurrency",
    "ServiceSubcategory",
    "SkuMeter",
    "SkuPriceDetails",
)
# EA and MCA cost details ("actual" and "amortized" share one layout). Spellings from Microsoft
# Learn "EA / MCA cost and usage details file schema" (versions 2019-10-01 to 2024-08-01) and
# the FinOps toolkit's EA samples (`Cost`, `BillingCurrency`, `Product`).
_COST_DETAILS_REQUIRED: Final = {
    "date": ("Date",),
    "cost": ("CostInBillingCurrency", "Cost"),
    "billing_currency": ("BillingCurrencyCode", "BillingCurrency"),
    "subscription_id": ("SubscriptionId",),
    "resource_id": ("ResourceId",),
    "meter_name": ("MeterName",),
    "meter_category": ("MeterCategory",),
    "quantity": ("Quantity",),
    "unit_of_measure": ("UnitOfMeasure",),
}
_COST_DETAILS_OPTIONAL: Final = {
    "meter_subcategory": ("MeterSubCategory",),
    "product_name": ("ProductName", "Product"),
    "charge_type": ("ChargeType",),
    "billing_account_id": ("BillingAccountId",),
}
# MCA cost details rate in a pricing currency and convert; EA ones have no such columns.
_MCA_MARKERS: Final = ("pricingCurrency", "costInPricingCurrency", "exchangeRatePricingToBilling")


def _resolve(
    header: Mapping[str, str], fields: Mapping[str, tuple[str, ...]]
) -> tuple[dict[str, str], list[str]]:
    found: dict[str, str] = {}
    missing: list[str] = []
    for field, spellings in fields.items():
        spelled = next((header[s.lower()] for s in spellings if s.lower() in header), None)
        if spelled is None:
            missing.append("|".join(spellings))
        else:
            found[field] = spelled
    return found, missing


def detect_layout(header: Sequence[str], origin: str) -> ExportLayout:
    """Which export layout a header is, from its column names alone.

    FOCUS (1.0 or 1.2) is recognised by its mandatory columns, EA / MCA cost details by
    theirs; anything else raises UnknownLayoutError naming, for each layout, the columns the
    header lacks (alternative spellings joined by `|`).
    """
    folded: dict[str, str] = {}
    for name in header:
        folded.setdefault(name.strip().lower(), name)
    focus, focus_missing = _resolve(folded, _FOCUS_REQUIRED)
    if not focus_missing:
        optional, _ = _resolve(folded, _FOCUS_OPTIONAL)
        later = any(name.lower() in folded for name in _FOCUS_AFTER_1_0)
        return ExportLayout("focus-1.2" if later else "focus-1.0", {**focus, **optional})
    details, details_missing = _resolve(folded, _COST_DETAILS_REQUIRED)
    if not details_missing:
        optional, _ = _resolve(folded, _COST_DETAILS_OPTIONAL)
        mca = any(name.lower() in folded for name in _MCA_MARKERS)
        return ExportLayout(
            "mca-cost-details" if mca else "ea-cost-details", {**details, **optional}
        )
    raise UnknownLayoutError(
        f"{origin}: not a cost export mdecost can read. As FOCUS it is missing "
        f"{', '.join(focus_missing)}; as EA/MCA cost details it is missing "
        f"{', '.join(details_missing)}"
    )


def export_to_costs(
    raw: pl.LazyFrame,
    layout: ExportLayout,
    *,
    cost_type: str | None,
    ingested_at: datetime,
    fallback_scope: str,
    units: pl.DataFrame | None = None,
) -> pl.LazyFrame:
    """Rows of an export file (every column a string, as read) as `costs` rows (lazy).

    `cost_type` is required for cost-details layouts, whose header does not say whether the
    file is actual or amortized cost; FOCUS rows carry both and are `FocusCost`. `scope` is the
    row's billing account as an ARM scope, else its subscription, else `fallback_scope` (the
    caller passes the file name). Rows of every provider in a FOCUS file are kept: totals stay
    those of the file, and non-Azure rows simply match no Azure machine.
    """
    if ingested_at.tzinfo is None:
        raise CostDataError(f"{fallback_scope}: ingested_at must be timezone-aware (UTC)")
    columns = layout.columns

    def column(field: str) -> pl.Expr:
        return pl.col(columns[field]) if field in columns else pl.lit(None, pl.String)

    common = (
        pl.lit(EXPORT_SOURCE).alias("cost_source"),
        pl.lit(ingested_at).cast(UTC_DATETIME).alias("ingested_at"),
        pl.lit(layout.source).alias("source"),
    )
    if layout.is_focus:
        subscription = subscription_from_sub_account(column("sub_account_id"))
        staged = raw.select(
            parse_utc_timestamp(column("charge_period_start")).alias("charge_period_start"),
            parse_utc_timestamp(column("charge_period_end")).alias("charge_period_end"),
            subscription.alias("subscription_id"),
            column("sub_account_id").alias("sub_account_id"),
            column("resource_id").alias("resource_id"),
            column("resource_type").alias("resource_type"),
            column("service_name").alias("service_name"),
            column("meter_category").alias("meter_category"),
            column("meter_subcategory").alias("meter_subcategory"),
            column("sku_meter").alias("sku_meter"),
            column("charge_description").alias("charge_description"),
            column("charge_category").alias("charge_category"),
            parse_number(column("consumed_quantity")).alias("quantity"),
            column("consumed_unit").alias("consumed_unit"),
            column("unit_of_measure").alias("x_unit_of_measure"),
            parse_number(column("block_size")).alias("block_size"),
            parse_number(column("billed_cost")).alias("billed_cost"),
            parse_number(column("effective_cost")).alias("effective_cost"),
            column("billing_currency").alias("billing_currency"),
            pl.lit(FOCUS_COST_TYPE).alias("cost_type"),
            *common,
            # FOCUS ids are already full (`/providers/Microsoft.Billing/billingAccounts/...`
            # for Azure); other providers' are kept as they are, never dressed as Azure scopes.
            pl.coalesce(
                _non_blank(column("billing_account_id")),
                _non_blank(column("sub_account_id")),
                pl.lit(fallback_scope),
            ).alias("scope"),
        )
        return _finish(staged, _units_frame(units))

    if cost_type not in COST_TYPES:
        raise CostDataError(
            f"{fallback_scope}: {layout.name} files do not say whether they hold actual or "
            f"amortized cost; give the cost type ({' or '.join(COST_TYPES)})"
        )
    day = parse_day(column("date"))
    cost = parse_number(column("cost"))
    subscription = column("subscription_id").str.strip_chars().str.to_lowercase()
    staged = raw.select(
        day.alias("charge_period_start"),
        (day + timedelta(days=1)).alias("charge_period_end"),
        subscription.alias("subscription_id"),
        pl.lit(None, pl.String).alias("sub_account_id"),
        column("resource_id").alias("resource_id"),
        pl.lit(None, pl.String).alias("resource_type"),
        # Cost analysis's "Service name" (the Query API's ServiceName) is the meter category.
        column("meter_category").alias("service_name"),
        column("meter_category").alias("meter_category"),
        column("meter_subcategory").alias("meter_subcategory"),
        column("meter_name").alias("sku_meter"),
        column("product_name").alias("charge_description"),
        charge_category_from_charge_type(column("charge_type")).alias("charge_category"),
        parse_number(column("quantity")).alias("quantity"),
        pl.lit(None, pl.String).alias("consumed_unit"),
        column("unit_of_measure").alias("x_unit_of_measure"),
        pl.lit(None, pl.Float64).alias("block_size"),
        cost.alias("billed_cost"),
        cost.alias("effective_cost"),
        column("billing_currency").alias("billing_currency"),
        pl.lit(cost_type).alias("cost_type"),
        *common,
        pl.coalesce(
            billing_account_scope(column("billing_account_id")),
            pl.concat_str(pl.lit("/subscriptions/"), subscription),
            pl.lit(fallback_scope),
        ).alias("scope"),
    )
    return _finish(staged, _units_frame(units))


# --- Finding the row behind a refusal -------------------------------------------------------
@dataclass(frozen=True)
class UnreadableValue:
    """The first value of an export that the import cannot use: where it is and why.

    `row` counts data rows from 1 (the first row after the header); `column` is the file's own
    spelling of the column.
    """

    row: int
    column: str
    value: str | None
    problem: str

    def describe(self, origin: str) -> str:
        where = f"{origin}: row {self.row}, column {self.column}"
        if self.value is None or not self.value.strip():
            return f"{where} {self.problem}"
        return f"{where}: {self.value!r} {self.problem}"


_NOT_A_NUMBER: Final = "is not a number"
_NOT_A_CURRENCY: Final = "is not a currency code (three letters, such as USD)"
_CURRENCY_CODE: Final = r"^\s*[A-Za-z]{3}\s*$"
_REQUIRED: Final = "is empty; every row needs a value there"
# Per layout kind: (logical field, parser, problem) checked in this order on every row; the
# fields every `costs` row needs (non-nullable) come first, so an empty one is named as such.
_DAY_PROBLEM: Final = "is not a date (cost details use MM/DD/YYYY or YYYY-MM-DD)"
_TIMESTAMP_PROBLEM: Final = "is not a UTC date-time (FOCUS uses YYYY-MM-DDTHH:MM:SSZ)"
_FOCUS_REQUIRED_VALUES: Final = (
    "charge_period_start",
    "charge_period_end",
    "billed_cost",
    "effective_cost",
    "billing_currency",
)
_DETAILS_REQUIRED_VALUES: Final = ("date", "cost", "billing_currency")
_NOT_PLAUSIBLE: Final = (
    f"is not a plausible amount (NaN, infinite, or {MAX_ROW_AMOUNT:.0e} or more in magnitude)"
)
_UNSAFE_ID_PROBLEM: Final = (
    "is not an id: it starts like a spreadsheet formula (=, +, -, @, tab, carriage return) or "
    "holds a control character"
)
_AMOUNT_FIELDS: Final = ("billed_cost", "effective_cost", "consumed_quantity", "cost", "quantity")
_DAY_FIELDS: Final = ("charge_period_start", "charge_period_end", "date")
_ID_FIELDS: Final = ("resource_id", "sub_account_id", "subscription_id", "billing_account_id")


def _value_checks(
    layout: ExportLayout, latest_year: int | None = None
) -> list[tuple[str, str, pl.Expr]]:
    """(column, problem, predicate that is true on a bad row) for every checked field: required
    values, parsable values, then plausible ones (amounts, dates up to `latest_year`, ids)."""
    columns = layout.columns
    required: tuple[str, ...]
    if layout.is_focus:
        required = _FOCUS_REQUIRED_VALUES
        parsed = {
            "charge_period_start": (parse_utc_timestamp, _TIMESTAMP_PROBLEM),
            "charge_period_end": (parse_utc_timestamp, _TIMESTAMP_PROBLEM),
            "billed_cost": (parse_number, _NOT_A_NUMBER),
            "effective_cost": (parse_number, _NOT_A_NUMBER),
            "consumed_quantity": (parse_number, _NOT_A_NUMBER),
            "block_size": (parse_number, _NOT_A_NUMBER),
        }
    else:
        required = _DETAILS_REQUIRED_VALUES
        parsed = {
            "date": (parse_day, _DAY_PROBLEM),
            "cost": (parse_number, _NOT_A_NUMBER),
            "quantity": (parse_number, _NOT_A_NUMBER),
        }
    checks: list[tuple[str, str, pl.Expr]] = []
    for field in required:
        checks.append((columns[field], _REQUIRED, _non_blank(pl.col(columns[field])).is_null()))
    for field, (parser, problem) in parsed.items():
        if field not in columns:
            continue
        text = pl.col(columns[field])
        unreadable = _non_blank(text).is_not_null() & parser(text, strict=False).is_null()
        checks.append((columns[field], problem, unreadable))
    currency = pl.col(columns["billing_currency"])
    checks.append(
        (columns["billing_currency"], _NOT_A_CURRENCY, ~currency.str.contains(_CURRENCY_CODE))
    )
    for field, (parser, _) in parsed.items():
        if field in columns and field in _AMOUNT_FIELDS:
            value = parser(pl.col(columns[field]), strict=False)
            checks.append((columns[field], _NOT_PLAUSIBLE, implausible_amount(value)))
        if field in columns and field in _DAY_FIELDS and latest_year is not None:
            day = parser(pl.col(columns[field]), strict=False)
            problem = f"is not a plausible charge date ({EARLIEST_CHARGE_YEAR} to {latest_year})"
            checks.append((columns[field], problem, implausible_day(day, latest_year)))
    for field in _ID_FIELDS:
        if field in columns:
            checks.append((columns[field], _UNSAFE_ID_PROBLEM, unsafe_id(pl.col(columns[field]))))
    return checks


def unusual_currencies(costs: pl.LazyFrame) -> list[str]:
    """Billing currencies of `costs` that are not three-letter codes (ISO 4217 shape)."""
    found = costs.select(pl.col("billing_currency").unique()).collect()["billing_currency"]
    return sorted(c for c in found.drop_nulls() if not re.match(_CURRENCY_CODE, c))


def first_unreadable_value(
    raw: pl.LazyFrame, layout: ExportLayout, *, latest_year: int | None = None
) -> UnreadableValue | None:
    """The first row of an export (every column a string, as read) holding a value that
    `export_to_costs` cannot use - an empty required field, a cost that is not a number or not
    a plausible amount, a date that is not a date (or, with `latest_year`, not a plausible one),
    an id that is not one - or None when every value is readable.

    For error messages: a strict cast says which value failed but not on which row.
    """
    checks = _value_checks(layout, latest_year)
    which = pl.coalesce(
        *(pl.when(bad).then(pl.lit(index)) for index, (_, _, bad) in enumerate(checks))
    )
    found = (
        raw.with_row_index("row", offset=1)
        .select(
            "row",
            which.alias("check"),
            *(pl.col(c).alias(f"v{i}") for i, (c, _, _) in enumerate(checks)),
        )
        .filter(pl.col("check").is_not_null())
        .head(1)
        .collect()
    )
    if found.is_empty():
        return None
    row = found.row(0, named=True)
    column, problem, _ = checks[row["check"]]
    return UnreadableValue(row["row"], column, row[f"v{row['check']}"], problem)


# --- Currencies -----------------------------------------------------------------------------
def currencies_by_sub_account(costs: pl.LazyFrame) -> pl.DataFrame:
    """Rows per sub-account and billing currency, with the first row number (from 1) of each.

    A row without a sub-account is counted under its `scope`. Sorted by sub-account, then
    largest count first.
    """
    key = pl.coalesce(pl.col("sub_account_id"), pl.col("scope")).alias("sub_account")
    return (
        costs.with_row_index("row", offset=1)
        .group_by(key, pl.col("billing_currency"))
        .agg(pl.len().alias("rows"), pl.col("row").min().alias("first_row"))
        .sort(["sub_account", "rows", "billing_currency"], descending=[False, True, False])
        .collect()
    )


def refuse_mixed_currency_sub_accounts(costs: pl.LazyFrame, origin: str) -> None:
    """Refuse cost rows where one sub-account (subscription) is billed in several currencies.

    A subscription belongs to one billing profile or enrollment and is invoiced in its one
    currency, so two currencies under one sub-account mean merged or corrupt data, and no sum
    over it would mean anything. Different sub-accounts of one billing account may differ (an
    MCA billing account's billing profiles each have their own currency): that is allowed, and
    amounts of different currencies are never added together downstream.
    """
    counts = currencies_by_sub_account(costs)
    mixed = counts.filter(pl.len().over("sub_account") > 1)
    if mixed.is_empty():
        return
    sub_account = mixed["sub_account"][0]
    rows = mixed.filter(pl.col("sub_account") == sub_account).rows(named=True)
    usual, *others = rows
    described = ", ".join(
        f"{other['billing_currency']} ({other['rows']} row(s), first at row {other['first_row']})"
        for other in others
    )
    raise CostDataError(
        f"{origin}: sub-account {sub_account} is billed in {usual['billing_currency']} "
        f"({usual['rows']} row(s)) and also in {described}; a subscription is invoiced in one "
        "currency, so this looks like merged or corrupt exports - import each billing account's "
        "own export"
    )
