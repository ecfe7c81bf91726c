"""Request parsing and polars evaluation for the list and query APIs the simulator serves.

- Activity Log `$filter` (OData: `field op 'value'` joined by `and`) and `$select`.
- Cost Management Query API bodies (`QueryDefinition`): type, timeframe, granularity,
  aggregation, grouping and dimension/tag filters, evaluated over the estate's cost rows.
- Retail Prices API `$filter` (`eq` joined by `and`).

Everything that scales with the estate is a polars expression over a frame, never a loop over
rows. A request the real API would refuse raises `BadRequest` with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from transforms.billing import normalise_resource_id


class BadRequest(ValueError):
    """The request is malformed or asks for something the API does not offer (HTTP 400)."""

    def __init__(self, message: str, code: str = "BadRequest") -> None:
        super().__init__(message)
        self.code = code


# -- OData $filter -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Clause:
    field: str
    op: str
    value: str


_CLAUSE = re.compile(
    r"\s*(?P<field>[A-Za-z_][\w/.]*)\s+(?P<op>eq|ne|ge|le|gt|lt)\s+"
    r"(?P<value>'(?:[^']|'')*'|[^\s']+)\s*",
    re.IGNORECASE,
)
_AND = re.compile(r"and\b", re.IGNORECASE)


def parse_filter(text: str) -> list[Clause]:
    """Parse `a eq 'x' and b ge 'y'` into clauses; anything else is a BadRequest."""
    clauses: list[Clause] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _CLAUSE.match(text, position)
        if not match:
            raise BadRequest(f"The $filter is invalid near: {text[position:]!r}", "InvalidFilter")
        raw = match.group("value")
        value = raw[1:-1].replace("''", "'") if raw.startswith("'") else raw
        clauses.append(Clause(match.group("field"), match.group("op").lower(), value))
        position = match.end()
        if position < len(text):
            joined = _AND.match(text, position)
            if not joined:
                raise BadRequest(
                    f"The $filter is invalid near: {text[position:]!r} (only 'and' is supported)",
                    "InvalidFilter",
                )
            position = joined.end()
    return clauses


def _instant(value: str, field: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{field} value {value!r} is not an ISO 8601 timestamp") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


_COMPARE = {
    "ge": lambda column, value: column >= value,
    "gt": lambda column, value: column > value,
    "le": lambda column, value: column <= value,
    "lt": lambda column, value: column < value,
    "eq": lambda column, value: column == value,
    "ne": lambda column, value: column != value,
}
# Activity Log filter fields compared case-insensitively on a lower-cased column.
_EVENT_FIELDS = {
    "resourcegroupname": "resource_group",
    "resourceuri": "resource_id",
    "resourceid": "resource_id",
    "correlationid": "correlation_id",
    "status": "status",
    "caller": "caller",
}


def activity_log_filter(text: str | None) -> pl.Expr:
    """The polars predicate of an Activity Log `$filter` (Azure requires `eventTimestamp ge`)."""
    if not text:
        raise BadRequest("The $filter query parameter is required.", "MissingFilter")
    clauses = parse_filter(text)
    predicate = pl.lit(True)
    has_start = False
    for clause in clauses:
        field = clause.field.lower()
        if field == "eventtimestamp":
            if clause.op not in ("ge", "gt", "le", "lt"):
                raise BadRequest(f"eventTimestamp supports ge/le, not {clause.op}", "InvalidFilter")
            has_start = has_start or clause.op in ("ge", "gt")
            instant = _instant(clause.value, "eventTimestamp")
            predicate &= _COMPARE[clause.op](pl.col("event_at"), pl.lit(instant))
        elif field in ("eventchannels", "levels") and clause.op == "eq":
            # Every simulated event is an Admin/Operation event; levels narrow by severity.
            if field == "levels":
                wanted = {level.strip().lower() for level in clause.value.split(",")}
                predicate &= (
                    pl.when(pl.col("status") == "Failed")
                    .then(pl.lit("error"))
                    .otherwise(pl.lit("informational"))
                    .is_in(sorted(wanted))
                )
        elif field == "resourceprovider" and clause.op == "eq":
            provider = clause.value.lower() + "/"
            predicate &= pl.col("resource_type").str.to_lowercase().str.starts_with(provider)
        elif field in _EVENT_FIELDS and clause.op == "eq":
            value = clause.value.lower()
            if field in ("resourceuri", "resourceid"):
                value = normalise_resource_id(clause.value) or ""
            predicate &= pl.col(_EVENT_FIELDS[field]).str.to_lowercase() == value
        else:
            raise BadRequest(
                f"The $filter field {clause.field!r} with operator {clause.op!r} is not supported",
                "InvalidFilter",
            )
    if not has_start:
        raise BadRequest(
            "The $filter must include 'eventTimestamp ge ...' (the start of the time range).",
            "MissingStartTime",
        )
    return predicate


def select_fields(event: dict[str, Any], select: str | None) -> dict[str, Any]:
    """Apply `$select=a,b,c` (top-level property names, case-insensitive) to one event."""
    if not select:
        return event
    wanted = {name.strip().lower() for name in select.split(",") if name.strip()}
    return {key: value for key, value in event.items() if key.lower() in wanted}


# -- Cost Management Query API -------------------------------------------------------------------
# Dimension name (as Azure spells it) -> column of the estate's cost rows.
DIMENSIONS = {
    "ResourceId": "resource_id",
    "ResourceGroup": "resource_group",
    "ResourceGroupName": "resource_group",
    "ResourceType": "resource_type",
    "ResourceLocation": "resource_location",
    "SubscriptionId": "subscription_id",
    "SubscriptionName": "subscription_name",
    "MeterCategory": "meter_category",
    "MeterSubcategory": "meter_subcategory",
    "MeterSubCategory": "meter_subcategory",
    "Meter": "meter",
    "MeterId": "meter_id",
    "ServiceName": "service_name",
    "ServiceTier": "service_tier",
    "ChargeType": "charge_type",
    "ConsumedService": "consumed_service",
    "PricingModel": "pricing_model",
    "PublisherType": "publisher_type",
    "UnitOfMeasure": "unit_of_measure",
    "Frequency": "frequency",
}
_DIMENSION_BY_LOWER = {name.lower(): name for name in DIMENSIONS}
# Aggregated column name -> column summed.
AGGREGATABLE = {
    "Cost": "cost",
    "PreTaxCost": "cost",
    "CostUSD": "cost_usd",
    "PreTaxCostUSD": "cost_usd",
    "UsageQuantity": "quantity",
}
_AGGREGATABLE_BY_LOWER = {name.lower(): name for name in AGGREGATABLE}
QUERY_TYPES = ("ActualCost", "AmortizedCost", "Usage")


@dataclass(frozen=True)
class CostQuery:
    """A validated QueryDefinition."""

    first_day: date
    last_day: date  # inclusive, as Azure treats `timePeriod.to`
    daily: bool
    aggregations: list[str]  # aggregated column names, Azure's spelling
    groupings: list[str]  # dimension names, Azure's spelling
    predicate: pl.Expr


def _day_range(body: dict[str, Any], clock: datetime) -> tuple[date, date]:
    timeframe = str(body.get("timeframe") or "")
    today = clock.date()
    month_start = today.replace(day=1)
    if timeframe.lower() == "custom":
        period = body.get("timePeriod") or {}
        if "from" not in period or "to" not in period:
            raise BadRequest("timeframe Custom requires timePeriod with 'from' and 'to'")
        first = _instant(str(period["from"]), "timePeriod.from").date()
        last = _instant(str(period["to"]), "timePeriod.to").date()
        if last < first:
            raise BadRequest(f"timePeriod.to {period['to']} is before timePeriod.from")
        if (last - first).days > 366:
            raise BadRequest("The time period of a query cannot be more than one year.")
        return first, last
    if timeframe.lower() in ("monthtodate", "billingmonthtodate"):
        return month_start, today
    if timeframe.lower() in ("thelastmonth", "thelastbillingmonth"):
        last = month_start - timedelta(days=1)
        return last.replace(day=1), last
    if timeframe.lower() == "weektodate":
        return today - timedelta(days=today.weekday()), today
    raise BadRequest(f"timeframe {timeframe!r} is not supported", "InvalidTimeframe")


def _filter_expression(node: dict[str, Any]) -> pl.Expr:
    if not isinstance(node, dict):
        raise BadRequest(f"filter node {node!r} must be an object")
    if node.get("and"):
        parts = [_filter_expression(child) for child in node["and"]]
        return pl.all_horizontal(parts)
    if node.get("or"):
        parts = [_filter_expression(child) for child in node["or"]]
        return pl.any_horizontal(parts)
    if node.get("not"):
        return ~_filter_expression(node["not"])
    for kind in ("dimensions", "tags"):
        comparison = node.get(kind)
        if not comparison:
            continue
        operator = str(comparison.get("operator", ""))
        if operator.lower() != "in":
            raise BadRequest(f"filter operator {operator!r} is not supported; use 'In'")
        values = [str(value).lower() for value in comparison.get("values") or []]
        name = str(comparison.get("name", ""))
        if kind == "tags":
            pairs = [f"{name}:{value}".lower() for value in values]
            return pl.col("tag_pairs").list.eval(pl.element().is_in(pairs)).list.any()
        dimension = _DIMENSION_BY_LOWER.get(name.lower())
        if dimension is None:
            raise BadRequest(f"filter dimension {name!r} is not a valid dimension")
        column = pl.col(DIMENSIONS[dimension]).str.to_lowercase()
        if dimension == "ResourceId":
            column = column.str.strip_chars_end("/")
            values = [value.rstrip("/") for value in values]
        return column.is_in(values)
    raise BadRequest("a filter node needs one of and, or, not, dimensions, tags")


def parse_cost_query(body: dict[str, Any], clock: datetime) -> CostQuery:
    query_type = str(body.get("type") or "")
    if query_type.lower() not in {t.lower() for t in QUERY_TYPES}:
        raise BadRequest(f"type {query_type!r} is not one of {', '.join(QUERY_TYPES)}")
    first, last = _day_range(body, clock)
    dataset = body.get("dataset") or {}
    granularity = str(dataset.get("granularity") or "None")
    if granularity.lower() not in ("daily", "none"):
        raise BadRequest(
            f"granularity {granularity!r} is not served by the simulator; use Daily or None",
            "InvalidGranularity",
        )
    aggregation = dataset.get("aggregation") or {
        "totalCost": {
            "name": "PreTaxCost" if query_type.lower() == "usage" else "Cost",
            "function": "Sum",
        }
    }
    aggregations = []
    for alias, spec in aggregation.items():
        name = _AGGREGATABLE_BY_LOWER.get(str((spec or {}).get("name", "")).lower())
        if name is None or str(spec.get("function", "")).lower() != "sum":
            raise BadRequest(
                f"aggregation {alias!r} must be Sum of one of {', '.join(AGGREGATABLE)}",
                "InvalidAggregation",
            )
        aggregations.append(name)
    groupings = []
    for grouping in dataset.get("grouping") or []:
        if str(grouping.get("type", "")).lower() != "dimension":
            raise BadRequest(
                f"grouping type {grouping.get('type')!r} is not served by the simulator; "
                "use Dimension"
            )
        name = _DIMENSION_BY_LOWER.get(str(grouping.get("name", "")).lower())
        if name is None:
            raise BadRequest(f"grouping {grouping.get('name')!r} is not a valid dimension")
        groupings.append(name)
    predicate = _filter_expression(dataset["filter"]) if dataset.get("filter") else pl.lit(True)
    return CostQuery(
        first_day=first,
        last_day=last,
        daily=granularity.lower() == "daily",
        aggregations=aggregations,
        groupings=groupings,
        predicate=predicate,
    )


def query_units(query: CostQuery) -> int:
    """The QPU a query costs: one per calendar month its period touches (BILLING-FACTS)."""
    first, last = query.first_day, query.last_day
    return (last.year - first.year) * 12 + last.month - first.month + 1


def run_cost_query(
    rows: pl.DataFrame, query: CostQuery
) -> tuple[list[dict[str, str]], pl.DataFrame]:
    """Aggregate cost rows as the Query API does: the response's columns and its row frame.

    Columns: aggregated columns (named after the aggregated column, not the alias), grouping
    dimensions, `UsageDate` (yyyymmdd number) when Daily, and `Currency`, as in the examples.
    """
    keys = [DIMENSIONS[name] for name in query.groupings]
    group_columns = [
        pl.col(column).fill_null("").alias(name)
        for column, name in zip(keys, query.groupings, strict=True)
    ]
    if query.daily:
        group_columns.append(
            (pl.col("usage_date").dt.strftime("%Y%m%d").cast(pl.Int64)).alias("UsageDate")
        )
    group_columns.append(pl.col("currency").alias("Currency"))
    names = (
        [*dict.fromkeys(query.groupings)] + (["UsageDate"] if query.daily else []) + ["Currency"]
    )
    aggregated = (
        rows.lazy()
        .filter(
            (pl.col("usage_date") >= query.first_day)
            & (pl.col("usage_date") <= query.last_day)
            & query.predicate
        )
        .select(
            *group_columns, *[pl.col(AGGREGATABLE[a]).alias(f"__{a}") for a in query.aggregations]
        )
        .group_by(names)
        .agg([pl.col(f"__{a}").sum().alias(a) for a in dict.fromkeys(query.aggregations)])
        .sort(names)
        .select(*dict.fromkeys(query.aggregations), *names)
        .collect()
    )
    columns = [
        {"name": name, "type": "Number" if dtype.is_numeric() else "String"}
        for name, dtype in aggregated.schema.items()
    ]
    return columns, aggregated


# -- Retail Prices API ---------------------------------------------------------------------------
_RETAIL_FIELDS = {
    "servicename": "serviceName",
    "productname": "productName",
    "skuname": "skuName",
    "metername": "meterName",
    "armregionname": "armRegionName",
    "location": "location",
    "servicefamily": "serviceFamily",
    "pricetype": "type",
    "meterid": "meterId",
    "armskuname": "armSkuName",
}


def retail_predicate(text: str | None, *, case_sensitive: bool) -> pl.Expr:
    """The predicate of a Retail Prices `$filter` over a frame of items (JSON field names).

    Values are case-sensitive from api-version 2023-01-01-preview on, insensitive before.
    """
    if not text:
        return pl.lit(True)
    predicate = pl.lit(True)
    for clause in parse_filter(text):
        field = _RETAIL_FIELDS.get(clause.field.lower())
        if field is None or clause.op != "eq":
            raise BadRequest(
                f"Invalid OData parameter: {clause.field} {clause.op} is not supported"
            )
        column = pl.col(field)
        if case_sensitive:
            predicate &= column == clause.value
        else:
            predicate &= column.str.to_lowercase() == clause.value.lower()
    return predicate
