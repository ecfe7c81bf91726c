"""Cost Management Query API: one month of daily costs for one subscription, every page followed.

The query asks for the finest grain mdecost needs in ONE request per page: Daily granularity,
grouped by ResourceId, MeterCategory, MeterSubcategory, Meter, ServiceName, ResourceType,
ChargeType and UnitOfMeasure, summing Cost and UsageQuantity. The REST spec says "up to 2 group
by clauses", but the service accepts more (azure-sdk-for-python#12973: the old SDK's client-side
"at most 2 items" check was wrong; the portal and FinOps tools group by more) and this module
posts raw JSON through the client's pipeline, so no SDK check applies. Splitting the grouping
over two queries would not work anyway: two result sets grouped by different dimensions cannot
be joined back into rows of the finest grain (their sums only agree on their common dimensions).

Paging: the SDK's `query.usage` returns one page; the next page is fetched by POSTing the SAME
body to `properties.nextLink` (which carries `$skiptoken`). Every request goes through the
client's own pipeline (credential, endpoint, CA bundle, user agent) with azure-core's retries off,
so `throttling.send_with_retries` alone answers 429s and 5xx and counts them; `paging.NextLinks`
refuses a nextLink back to a page already read and an endless run of empty pages.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest, HttpResponse
from azure.mgmt.costmanagement import CostManagementClient

from flows.collect.paging import NextLinks
from flows.collect.qpu import QpuBudget
from flows.collect.scopes import Month
from flows.collect.throttling import RetryLimits, ThrottleStats, send_with_retries
from transforms.billing import COST_ROWS, DEFENDER_QUERY_METERS

QUERY_GROUPING = (
    "ResourceId",
    "MeterCategory",
    "MeterSubcategory",
    "Meter",
    "ServiceName",
    "ResourceType",
    "ChargeType",
)
# The unit makes quantities comparable (`10 Hours` vs `1/Hour`). It is asked for too; should a
# service refuse it as a grouping dimension (400 naming it), the month is asked again without it
# and `transforms.costs` falls back to the meter's known unit.
UNIT_DIMENSION = "UnitOfMeasure"
# Above one subscription (billing account, management group) rows are grouped by subscription too.
SUBSCRIPTION_DIMENSION = "SubscriptionId"
# Aggregations are keyed by alias, but the result columns are named after the aggregated column
# ("Cost", "UsageQuantity"): the COSTS conversion maps columns by those names.
QUERY_AGGREGATION = {
    "totalCost": {"name": "Cost", "function": "Sum"},
    "totalUsageQuantity": {"name": "UsageQuantity", "function": "Sum"},
}
COST_TYPES = ("ActualCost", "AmortizedCost")
# The api-version of azure-mgmt-costmanagement 5 (DESIGN "Stack notes").
QUERY_API_VERSION = "2025-03-01"
CLIENT_TYPE_HEADER = "ClientType"


def defender_filter() -> dict[str, Any]:
    """The dataset filter that keeps Defender for Servers rows: their meters, by name."""
    return {
        "dimensions": {"name": "Meter", "operator": "In", "values": list(DEFENDER_QUERY_METERS)}
    }


def query_body(
    cost_type: str,
    month: Month,
    *,
    with_unit: bool = True,
    cost_rows: str = "defender",
    by_subscription: bool = False,
) -> dict[str, Any]:
    """The Query API body for one month, Daily, at mdecost's grouping (and the unit if asked).

    `timePeriod.to` is the last second of the month: the API treats it as inclusive.
    `cost_rows` "defender" asks for Defender for Servers meters only (a machine's other costs,
    VM compute, disks, are most of a subscription's rows and mdecost needs none of them); "all"
    for every row. `by_subscription` adds the SubscriptionId dimension, for a scope above one
    subscription (a billing account or management group), whose rows are split per subscription.
    """
    if cost_type not in COST_TYPES:
        raise ValueError(f"cost type {cost_type!r} is not one of {', '.join(COST_TYPES)}")
    if cost_rows not in COST_ROWS:
        raise ValueError(f"cost rows {cost_rows!r} is not one of {', '.join(COST_ROWS)}")
    last_second = month.end - timedelta(seconds=1)
    dimensions = (
        *((SUBSCRIPTION_DIMENSION,) if by_subscription else ()),
        *QUERY_GROUPING,
        *((UNIT_DIMENSION,) if with_unit else ()),
    )
    dataset: dict[str, Any] = {
        "granularity": "Daily",
        "aggregation": QUERY_AGGREGATION,
        "grouping": [{"type": "Dimension", "name": name} for name in dimensions],
    }
    if cost_rows == "defender":
        dataset["filter"] = defender_filter()
    return {
        "type": cost_type,
        "timeframe": "Custom",
        "timePeriod": {
            "from": month.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "to": last_second.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "dataset": dataset,
    }


def query_url(arm_endpoint: str, scope: str, api_version: str) -> str:
    return (
        f"{arm_endpoint.rstrip('/')}{scope}/providers/Microsoft.CostManagement/query"
        f"?api-version={api_version}"
    )


@dataclass
class QueryPages:
    """Every page of one query: the columns (`{name, type}`, from the first page), all rows."""

    columns: list[dict[str, str]] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    pages: int = 0


class QueryShapeError(ValueError):
    """A page's columns differ from the first page's: rows cannot be read by name safely."""


def read_page(
    response: HttpResponse,
) -> tuple[list[dict[str, str]], list[list[Any]], str | None]:
    """(columns, rows, nextLink) of one Query API answer; 204 No Content is an empty page."""
    if response.status_code == 204 or not response.content:
        return [], [], None
    properties = response.json().get("properties") or {}
    columns = [
        {"name": column["name"], "type": column.get("type", "")}
        for column in properties.get("columns") or []
    ]
    return columns, properties.get("rows") or [], properties.get("nextLink") or None


def add_page(
    pages: QueryPages, columns: list[dict[str, str]], rows: list[list[Any]], origin: str
) -> None:
    """Append a page; the columns of every non-empty page must be those of the first one."""
    pages.pages += 1
    if not columns:
        return
    if not pages.columns:
        pages.columns = columns
    elif columns != pages.columns:
        raise QueryShapeError(
            f"{origin}: page {pages.pages} has columns {columns}, the first page had "
            f"{pages.columns}"
        )
    pages.rows.extend(rows)


def fetch_query_pages(
    client: CostManagementClient,
    url: str,
    body: dict[str, Any],
    *,
    client_type: str,
    limits: RetryLimits,
    stats: ThrottleStats,
    what: str,
    log: logging.Logger | logging.LoggerAdapter,
    budget: QpuBudget | None = None,
) -> QueryPages:
    """POST `body` to `url`, then to every nextLink, through `client`'s pipeline; all pages.

    With a `budget`, each request first waits for room in the tenant's QPU windows and books
    what it cost (`stats.qpu`, `stats.paced_seconds`). EndlessPaging instead of a nextLink that
    repeats a page or prolongs a run of empty pages.
    """
    pages = QueryPages()
    links = NextLinks(what)
    next_url: str | None = url
    while next_url is not None:
        request_url = next_url
        links.requested(request_url)

        def send(request_url: str = request_url) -> HttpResponse:
            request = HttpRequest(
                "POST", request_url, json=body, headers={CLIENT_TYPE_HEADER: client_type}
            )
            if budget is None:
                return client.send_request(request, retry_total=0)
            reservation, paced = budget.reserve()
            stats.paced_seconds += paced
            try:
                response = client.send_request(request, retry_total=0)
            except BaseException:
                budget.release(reservation)
                raise
            stats.qpu += budget.settle(reservation, response.headers)
            return response

        columns, rows, next_url = send_with_retries(
            send,
            read_page,
            limits=limits,
            stats=stats,
            what=f"{what} page {pages.pages + 1}",
            log=log,
        )
        add_page(pages, columns, rows, what)
        links.check(len(rows), next_url)
    return pages


def refuses_unit_dimension(error: HttpResponseError) -> bool:
    """True for a 400 that names the UnitOfMeasure grouping (a service that does not offer it)."""
    return error.status_code == 400 and UNIT_DIMENSION.lower() in (error.message or "").lower()


def fetch_month(
    client: CostManagementClient,
    *,
    arm_endpoint: str,
    scope: str,
    cost_type: str,
    month: Month,
    client_type: str,
    limits: RetryLimits,
    stats: ThrottleStats,
    log: logging.Logger | logging.LoggerAdapter,
    cost_rows: str = "defender",
    by_subscription: bool = False,
    budget: QpuBudget | None = None,
) -> QueryPages:
    """Every row of one month of `cost_type` for `scope`, at mdecost's grouping (see
    `query_body` for `cost_rows` and `by_subscription`), paced by `budget` when given."""
    url = query_url(arm_endpoint, scope, QUERY_API_VERSION)
    what = f"cost query {scope} {month} {cost_type}"

    def pages_for(body: dict[str, Any]) -> QueryPages:
        return fetch_query_pages(
            client,
            url,
            body,
            client_type=client_type,
            limits=limits,
            stats=stats,
            what=what,
            log=log,
            budget=budget,
        )

    def body(with_unit: bool = True) -> dict[str, Any]:
        return query_body(
            cost_type,
            month,
            with_unit=with_unit,
            cost_rows=cost_rows,
            by_subscription=by_subscription,
        )

    try:
        return pages_for(body())
    except HttpResponseError as error:
        if not refuses_unit_dimension(error):
            raise
        log.warning(
            "%s: the service refuses grouping by %s; asking again without it", what, UNIT_DIMENSION
        )
        return pages_for(body(with_unit=False))
