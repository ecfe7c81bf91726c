"""`mdecost prices refresh`: Defender for Servers list prices from the Azure Retail Prices API.

The API is anonymous (no credential) and paged: each answer holds up to 100 `Items` and a
`NextPageLink` to the next page, null on the last. Prices are requested in the configured
currency (`currencyCode`); USD is Microsoft's price of record, other currencies are the API's
own conversions. Zero-priced trial meters are dropped; every other Defender for Servers row is
stored in the lake dataset `retail_prices` (one partition per snapshot day and currency), from
which `pricing.book` derives new effective-dated entries when a price changed.

A refresh is all or nothing: every page is fetched and checked, and the new price book is built
in memory, before the partition is written. Any failure (network, HTTP error, a page that is not
JSON or not the API's shape, no priced P1/P2 meter at all) raises RetailPricesError naming what
failed, and the lake, hence the book, stays as it was.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode, urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import requests

from flows.config import Settings
from flows.lake import dataset_files, lake_lock, partition_path, write_partition
from pricing.book import (
    PriceEntry,
    PricingError,
    book_entries,
    is_trial_or_free,
    load_price_book,
    retail_plan_option,
)
from transforms.billing import RETAIL_PRODUCT_NAME, RETAIL_SERVICE_NAME
from transforms.schemas import RETAIL_PRICES

RETAIL_FILTER: Final = (
    f"serviceName eq '{RETAIL_SERVICE_NAME}' and productName eq '{RETAIL_PRODUCT_NAME}'"
)
DATASET: Final = "retail_prices"
# Bounded retries for throttling (429) and server errors (5xx) and dropped connections.
MAX_ATTEMPTS: Final = 5
MAX_BACKOFF_SECONDS: Final = 60.0
TIMEOUT_SECONDS: Final = (10.0, 60.0)
# Defender for Servers is a few dozen items (P1, P2, trials, per region): a thousand pages means
# the server is looping.
MAX_PAGES: Final = 1000
_ITEM_FIELDS: Final = {
    "meterId": "meter_id",
    "meterName": "meter_name",
    "skuName": "sku_name",
    "productName": "product_name",
    "serviceName": "service_name",
    "unitOfMeasure": "unit_of_measure",
    "retailPrice": "retail_price",
    "unitPrice": "unit_price",
    "currencyCode": "currency_code",
    "effectiveStartDate": "effective_start_date",
    "type": "price_type",
}


class RetailPricesError(PricingError):
    """The Retail Prices API could not be read, or answered something unusable."""


@dataclass(frozen=True)
class RetailFetch:
    """Every item of every page of one query, and how many pages it took."""

    items: list[dict[str, Any]]
    pages: int


@dataclass(frozen=True)
class RefreshResult:
    """What a refresh stored and what it changed in the price book."""

    pages: int
    items: int
    trial_or_free_ignored: int
    other_products_ignored: int
    stored: int
    partition: Path
    new_entries: list[PriceEntry]


def retail_query_url(endpoint: str, currency: str) -> str:
    """The first page's URL: Defender for Servers only, prices in `currency`.

    `currencyCode` is quoted as in Microsoft's documentation (`currencyCode='EUR'`).
    """
    query = urlencode(
        {"$filter": RETAIL_FILTER, "currencyCode": f"'{currency}'"}, quote_via=quote, safe="$'"
    )
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


def fetch_retail_items(
    endpoint: str,
    currency: str,
    *,
    verify: bool | str = True,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RetailFetch:
    """Every Defender for Servers item the API lists in `currency`, following every NextPageLink.

    `verify` is requests' TLS verification: True, or the path of a CA bundle (the simulator's).
    Raises RetailPricesError naming the page and URL on any failure.
    """
    if urlparse(endpoint).scheme != "https":
        raise RetailPricesError(
            f"[pricing] retail_prices_endpoint must be an https:// URL, got {endpoint!r}"
        )
    http = session or requests.Session()
    items: list[dict[str, Any]] = []
    url: str | None = retail_query_url(endpoint, currency)
    seen: set[str] = set()
    pages = 0
    while url:
        if url in seen:
            raise RetailPricesError(f"page {pages + 1}: NextPageLink {url} repeats an earlier page")
        if pages >= MAX_PAGES:
            raise RetailPricesError(f"more than {MAX_PAGES} pages; stopped at {url}")
        seen.add(url)
        pages += 1
        payload = _get_page(http, url, pages, verify, sleep)
        page_items = payload.get("Items")
        if not isinstance(page_items, list):
            raise RetailPricesError(f"page {pages} ({url}) has no Items list")
        items.extend(page_items)
        next_link = payload.get("NextPageLink")
        if next_link is not None and not isinstance(next_link, str):
            raise RetailPricesError(f"page {pages} ({url}): NextPageLink is not a URL")
        url = next_link or None
    return RetailFetch(items=items, pages=pages)


def _get_page(
    http: requests.Session,
    url: str,
    page: int,
    verify: bool | str,
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    for attempt in range(1, MAX_ATTEMPTS + 1):
        last = attempt == MAX_ATTEMPTS
        try:
            response = http.get(
                url, timeout=TIMEOUT_SECONDS, verify=verify, headers={"Accept": "application/json"}
            )
        except requests.exceptions.SSLError as error:
            raise RetailPricesError(
                f"page {page}: TLS verification of {url} failed ({error}); for a private "
                "endpoint set [azure] ca_bundle to its CA certificate"
            ) from None
        except requests.RequestException as error:
            if last:
                raise RetailPricesError(
                    f"page {page}: GET {url} failed after {attempt} attempts: "
                    f"{type(error).__name__}: {error}"
                ) from None
            sleep(_backoff(attempt, None))
            continue
        if response.status_code == 429 or response.status_code >= 500:
            if last:
                raise RetailPricesError(
                    f"page {page}: GET {url} answered HTTP {response.status_code} "
                    f"{response.reason} after {attempt} attempts"
                )
            sleep(_backoff(attempt, response.headers.get("Retry-After")))
            continue
        if response.status_code != 200:
            raise RetailPricesError(
                f"page {page}: GET {url} answered HTTP {response.status_code} {response.reason}: "
                f"{response.text[:200]}"
            )
        try:
            payload = json.loads(response.content)
        except ValueError as error:
            raise RetailPricesError(f"page {page} ({url}) is not valid JSON: {error}") from None
        if not isinstance(payload, dict):
            raise RetailPricesError(f"page {page} ({url}) is not a JSON object")
        return payload
    raise AssertionError("unreachable: the last attempt returns or raises")


def _backoff(attempt: int, retry_after: str | None) -> float:
    """Seconds to wait before the next attempt: the server's Retry-After if it gives one in
    seconds, else 1, 2, 4, ... seconds; never more than MAX_BACKOFF_SECONDS."""
    if retry_after is not None:
        try:
            return min(max(float(retry_after), 0.0), MAX_BACKOFF_SECONDS)
        except ValueError:
            pass
    return min(float(2 ** (attempt - 1)), MAX_BACKOFF_SECONDS)


@dataclass(frozen=True)
class RetailRows:
    """The items worth storing, as a RETAIL_PRICES table, and what was left out."""

    table: pa.Table
    trial_or_free_ignored: int
    other_products_ignored: int


def retail_prices_table(
    items: Sequence[Mapping[str, Any]],
    *,
    currency: str,
    endpoint: str,
    ingested_at: datetime,
) -> RetailRows:
    """RETAIL_PRICES rows for the Defender for Servers items, trial and zero-priced ones dropped.

    Items of other products (a server that ignored the filter) are dropped and counted. An item
    missing a field, with a price that is not a number, or priced in another currency than the
    one asked for, is a RetailPricesError naming the item.
    """
    rows: list[dict[str, Any]] = []
    trial_or_free = other_products = 0
    for index, item in enumerate(items):
        row = _row(item, index)
        if row["currency_code"] != currency:
            raise RetailPricesError(
                f"item {index} ({row['meter_name']}) is priced in {row['currency_code']}, "
                f"but {currency} was asked for"
            )
        if row["service_name"] != RETAIL_SERVICE_NAME or row["product_name"] != RETAIL_PRODUCT_NAME:
            other_products += 1
            continue
        if is_trial_or_free(row["meter_name"], row["sku_name"], row["retail_price"]):
            trial_or_free += 1
            continue
        row.update(
            ingested_at=ingested_at, source=endpoint, scope=f"{RETAIL_PRODUCT_NAME} ({currency})"
        )
        rows.append(row)
    return RetailRows(
        table=pa.Table.from_pylist(rows, schema=RETAIL_PRICES),
        trial_or_free_ignored=trial_or_free,
        other_products_ignored=other_products,
    )


def _row(item: Mapping[str, Any], index: int) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise RetailPricesError(f"item {index} is not a JSON object")
    if missing := [key for key in _ITEM_FIELDS if item.get(key) is None]:
        raise RetailPricesError(f"item {index} lacks {', '.join(missing)}")
    row: dict[str, Any] = {column: item[key] for key, column in _ITEM_FIELDS.items()}
    for column in ("retail_price", "unit_price"):
        value = row[column]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RetailPricesError(f"item {index}: {column} is not a number: {value!r}")
        # Python's json reads NaN, Infinity and 1e999 (infinite) as numbers; no price is one,
        # and a negative price is no list price either.
        if not math.isfinite(value) or value < 0:
            raise RetailPricesError(f"item {index}: {column} is not a price: {value!r}")
        row[column] = float(value)
    for column in (
        "meter_id",
        "meter_name",
        "sku_name",
        "product_name",
        "service_name",
        "unit_of_measure",
        "currency_code",
        "price_type",
    ):
        if not isinstance(row[column], str):
            raise RetailPricesError(f"item {index}: {column} is not a string: {row[column]!r}")
    try:
        started = datetime.fromisoformat(row["effective_start_date"])
    except (TypeError, ValueError):
        raise RetailPricesError(
            f"item {index}: effectiveStartDate {row['effective_start_date']!r} is not a timestamp"
        ) from None
    row["effective_start_date"] = (
        started.replace(tzinfo=UTC) if started.tzinfo is None else started.astimezone(UTC)
    )
    region = item.get("armRegionName")
    row["arm_region_name"] = region if isinstance(region, str) and region else None
    return row


def refresh_retail_prices(
    settings: Settings,
    *,
    now: datetime | None = None,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RefreshResult:
    """Fetch, check and store today's Defender for Servers list prices; report book changes.

    Nothing is written unless every page was read, at least one priced P1/P2 meter was found and
    the price book builds with the new rows; otherwise RetailPricesError (or the book's own
    PricingError) says what failed and the book is as it was.
    """
    pricing = settings.pricing
    fetched_at = (now or datetime.now(UTC)).astimezone(UTC)
    verify: bool | str = str(settings.azure.ca_bundle) if settings.azure.ca_bundle else True
    endpoint = pricing.retail_prices_endpoint
    fetch = fetch_retail_items(
        endpoint, pricing.currency, verify=verify, session=session, sleep=sleep
    )
    rows = retail_prices_table(
        fetch.items, currency=pricing.currency, endpoint=endpoint, ingested_at=fetched_at
    )
    if not any(retail_plan_option(row) for row in rows.table.to_pylist()):
        raise RetailPricesError(
            f"{endpoint} listed {len(fetch.items)} item(s) on {fetch.pages} page(s) but no priced "
            f"Defender for Servers P1/P2 meter in {pricing.currency}"
        )
    partition = {"snapshot_date": fetched_at.date().isoformat(), "currency": pricing.currency}
    target = partition_path(settings.lake.folder, DATASET, partition)
    stored = {
        file: pq.ParquetFile(file).read() for file in dataset_files(settings.lake.folder, DATASET)
    }
    before = set(book_entries(load_price_book(settings, _concat(list(stored.values())))))
    unchanged = [table for file, table in stored.items() if file != target]
    after = load_price_book(settings, _concat([*unchanged, rows.table]))
    with lake_lock(settings.lake.folder):
        path = write_partition(
            settings.lake.folder, DATASET, partition, rows.table, origin=endpoint
        )
    return RefreshResult(
        pages=fetch.pages,
        items=len(fetch.items),
        trial_or_free_ignored=rows.trial_or_free_ignored,
        other_products_ignored=rows.other_products_ignored,
        stored=rows.table.num_rows,
        partition=path,
        new_entries=[entry for entry in book_entries(after) if entry not in before],
    )


def _concat(tables: list[pa.Table]) -> pa.Table:
    if not tables:
        return RETAIL_PRICES.empty_table()
    return pa.concat_tables([table.cast(RETAIL_PRICES) for table in tables])
