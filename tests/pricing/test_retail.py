"""`mdecost prices refresh` against recorded Retail Prices API pages served over HTTPS on loopback:
every page followed, trial meters ignored, the currency honoured, failures leave the book as it
was."""

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from flows.config import Settings
from flows.lake import dataset_files, scan_dataset
from pricing.book import load_price_book, price_in_force
from pricing.retail import (
    RETAIL_FILTER,
    RetailPricesError,
    refresh_retail_prices,
    retail_prices_table,
)
from transforms.schemas import RETAIL_PRICES

FIXTURES = Path(__file__).parents[1] / "fixtures" / "pricing"
NOW = datetime(2026, 11, 20, 6, 30, tzinfo=UTC)


def settings_for(api, tmp_path: Path, currency: str = "USD", **pricing) -> Settings:
    return Settings(
        azure={"ca_bundle": api.ca_bundle},
        lake={"path": tmp_path / "lake"},
        pricing={"retail_prices_endpoint": api.base, "currency": currency, **pricing},
    )


# --- A successful refresh ----------------------------------------------------------------------


def test_a_refresh_follows_every_page_ignores_trials_and_adds_the_price_change(
    retail_api, tmp_path
):
    settings = settings_for(retail_api, tmp_path)
    result = refresh_retail_prices(settings, now=NOW)

    # Three pages (the second is empty but links to the third); 8 + 0 + 4 = 12 items, of which
    # 3 zero-priced trial meters are dropped: 9 rows stored.
    assert len(retail_api.requests) == 3
    assert (result.pages, result.items, result.trial_or_free_ignored, result.stored) == (
        3,
        12,
        3,
        9,
    )
    first = urlsplit(retail_api.requests[0])
    query = parse_qs(first.query)
    assert query["$filter"] == [RETAIL_FILTER]
    assert query["currencyCode"] == ["'USD'"]
    assert [unquote(r) for r in retail_api.requests[1:]] == [
        unquote(urlsplit(retail_api.base).path)
        + "?$filter="
        + RETAIL_FILTER
        + "&currencyCode='USD'&$skip="
        + skip
        for skip in ("8", "16")
    ]

    stored = scan_dataset(settings.lake.path, "retail_prices").collect()
    assert stored.height == 9
    assert not any("Trial" in name for name in stored["meter_name"].to_list())
    assert sorted(set(stored["meter_name"].to_list())) == [
        "Standard P1 Node",
        "Standard P2 Node",
        "Standard P2 Node - MDATP Benefit",
    ]
    assert dataset_files(settings.lake.path, "retail_prices") == [result.partition]
    assert result.partition.parent.name == "currency=USD"
    assert result.partition.parent.parent.name == "snapshot_date=2026-11-20"

    # P2 moved to 0.025 in all three regions on 2026-11-16 (eastus and westeurope list the old
    # price beside the new one). November 2026, 24 h a day on 30 days:
    # 15 x 24 x 0.02 = 7.20 plus 15 x 24 x 0.025 = 9.00 -> 16.20 USD.
    book = load_price_book(settings)
    total = sum(
        24
        * price_in_force(book, "defender_servers_p2", date(2026, 11, 1) + timedelta(d), "USD").rate
        for d in range(30)
    )
    assert total == pytest.approx(16.20, abs=1e-9)
    changes = {(e.option, e.effective_from, e.effective_to, e.rate) for e in result.new_entries}
    assert changes == {
        # the API vouches for P1 and P2 from 2023-08-01, before the shipped book's 2024-01-01
        ("defender_servers_p1", date(2023, 8, 1), date(2024, 1, 1), 0.00672),
        ("defender_servers_p2", date(2023, 8, 1), date(2024, 1, 1), 0.02),
        # the shipped P2 entry now ends where the new price starts
        ("defender_servers_p2", date(2024, 1, 1), date(2026, 11, 16), 0.02),
        ("defender_servers_p2", date(2026, 11, 16), None, 0.025),
        # Plan 2's MDATP benefit meter (eastus only), kept as its own option: the MDE component
        # of P2 is then 0.025 - 0.015 in November 2026 (transforms.options.plan_rates)
        ("defender_servers_p2_mde_benefit", date(2024, 3, 1), None, 0.015),
    }


def test_refreshing_again_the_same_day_replaces_that_snapshot(retail_api, tmp_path):
    settings = settings_for(retail_api, tmp_path)
    refresh_retail_prices(settings, now=NOW)
    again = refresh_retail_prices(settings, now=NOW + timedelta(hours=2))
    assert again.new_entries == []
    assert scan_dataset(settings.lake.path, "retail_prices").collect().height == 9


def test_the_configured_currency_is_asked_for_and_stored(retail_api, tmp_path):
    def euro_pages(path: str, number: int) -> tuple:
        status, headers, body = retail_api.recorded_pages(path, number)
        return status, headers, body.replace(b'"USD"', b'"EUR"').replace(b"%27USD%27", b"%27EUR%27")

    retail_api.responder = euro_pages
    settings = settings_for(retail_api, tmp_path, currency="EUR")
    result = refresh_retail_prices(settings, now=NOW)
    assert parse_qs(urlsplit(retail_api.requests[0]).query)["currencyCode"] == ["'EUR'"]
    assert result.partition.parent.name == "currency=EUR"
    book = load_price_book(settings)
    assert price_in_force(book, "defender_servers_p2", date(2026, 12, 1), "EUR").rate == 0.025
    assert price_in_force(book, "defender_servers_p2", date(2026, 12, 1), "USD").rate == 0.02


def test_throttling_and_server_errors_are_retried_with_backoff(retail_api, tmp_path):
    def flaky(path: str, number: int) -> tuple:
        if number == 1:
            return 429, {"Retry-After": "3"}, b'{"error": "throttled"}'
        if number == 2:
            return 503, {}, b"busy"
        return retail_api.recorded_pages(path, number)

    retail_api.responder = flaky
    waits: list[float] = []
    result = refresh_retail_prices(settings_for(retail_api, tmp_path), now=NOW, sleep=waits.append)
    # 429 waits the server's Retry-After (3 s); the 503 after it is the second attempt: 2 s.
    assert waits == [3.0, 2.0]
    assert (result.pages, len(retail_api.requests)) == (3, 5)


# --- Failures leave the book as it was ---------------------------------------------------------


@pytest.fixture
def refreshed_once(retail_api, tmp_path):
    """A lake holding one successful refresh, and the book it gives."""
    settings = settings_for(retail_api, tmp_path)
    refresh_retail_prices(settings, now=NOW)
    return settings, load_price_book(settings)


def fail_on_page(retail_api, page: int, answer: tuple) -> None:
    def responder(path: str, number: int) -> tuple:
        return answer if number == page else retail_api.recorded_pages(path, number)

    retail_api.requests.clear()
    retail_api.responder = responder


@pytest.mark.parametrize(
    ("page", "answer", "message"),
    [
        (2, (200, {}, b'{"Items": [ {"currencyCode": "US'), r"page 2 \(.*\) is not valid JSON"),
        (1, (404, {}, b"ResourceNotFound"), r"page 1: GET .* answered HTTP 404 Not Found"),
        (3, (200, {}, b'{"Count": 0}'), r"page 3 \(.*\) has no Items list"),
        (
            1,
            (200, {}, json.dumps({"Items": [{"meterName": "Standard P1 Node"}]}).encode()),
            r"item 0 lacks meterId, skuName",
        ),
    ],
)
def test_a_failed_refresh_says_what_failed_and_leaves_the_book_as_it_was(
    retail_api, refreshed_once, page, answer, message
):
    settings, book_before = refreshed_once
    files_before = {f: f.read_bytes() for f in dataset_files(settings.lake.path, "retail_prices")}
    fail_on_page(retail_api, page, answer)
    with pytest.raises(RetailPricesError, match=message):
        refresh_retail_prices(settings, now=NOW + timedelta(days=1), sleep=lambda _: None)
    assert {f: f.read_bytes() for f in dataset_files(settings.lake.path, "retail_prices")} == (
        files_before
    )
    assert load_price_book(settings) == book_before


def test_persistent_server_errors_give_up_after_bounded_retries(retail_api, refreshed_once):
    settings, book_before = refreshed_once
    retail_api.requests.clear()
    retail_api.responder = lambda path, number: (503, {}, b"down")
    waits: list[float] = []
    with pytest.raises(RetailPricesError, match=r"answered HTTP 503 .* after 5 attempts"):
        refresh_retail_prices(settings, now=NOW + timedelta(days=1), sleep=waits.append)
    # 5 attempts, waits of 1, 2, 4, 8 s between them.
    assert (len(retail_api.requests), waits) == (5, [1.0, 2.0, 4.0, 8.0])
    assert load_price_book(settings) == book_before


def test_an_answer_without_any_priced_defender_meter_is_a_failure(retail_api, tmp_path):
    only_trials = {
        "Items": [
            json.loads((FIXTURES / "retail_page1.json").read_text())["Items"][6],
        ],
        "NextPageLink": None,
    }
    retail_api.responder = lambda path, number: (200, {}, json.dumps(only_trials).encode())
    settings = settings_for(retail_api, tmp_path)
    with pytest.raises(
        RetailPricesError, match=r"listed 1 item\(s\) on 1 page\(s\) but no priced Defender"
    ):
        refresh_retail_prices(settings, now=NOW)
    assert dataset_files(settings.lake.path, "retail_prices") == []


def test_an_untrusted_certificate_is_a_failure_naming_ca_bundle(retail_api, tmp_path):
    settings = Settings(
        lake={"path": tmp_path / "lake"}, pricing={"retail_prices_endpoint": retail_api.base}
    )
    with pytest.raises(RetailPricesError, match=r"TLS verification .* \[azure\] ca_bundle"):
        refresh_retail_prices(settings, now=NOW)


def test_an_unreachable_endpoint_is_retried_then_reported(tmp_path):
    settings = Settings(
        lake={"path": tmp_path / "lake"},
        pricing={"retail_prices_endpoint": "https://127.0.0.1:9/api/retail/prices"},
    )
    waits: list[float] = []
    with pytest.raises(RetailPricesError, match=r"page 1: GET .* failed after 5 attempts: Conn"):
        refresh_retail_prices(settings, now=NOW, sleep=waits.append)
    assert waits == [1.0, 2.0, 4.0, 8.0]


def test_a_plain_http_endpoint_is_refused(tmp_path):
    settings = Settings(
        lake={"path": tmp_path / "lake"},
        pricing={"retail_prices_endpoint": "http://prices.example/api/retail/prices"},
    )
    with pytest.raises(RetailPricesError, match=r"must be an https:// URL"):
        refresh_retail_prices(settings, now=NOW)


# --- Turning items into rows -------------------------------------------------------------------


def test_items_in_another_currency_or_of_another_product_are_not_stored():
    item = json.loads((FIXTURES / "retail_page1.json").read_text())["Items"][1]
    storage = {**item, "productName": "Microsoft Defender for Storage", "meterName": "Standard"}
    rows = retail_prices_table(
        [item, storage], currency="USD", endpoint="https://x", ingested_at=NOW
    )
    assert (rows.table.num_rows, rows.other_products_ignored) == (1, 1)
    row = rows.table.to_pylist()[0]
    assert (row["meter_name"], row["retail_price"], row["arm_region_name"]) == (
        "Standard P2 Node",
        0.02,
        "eastus",
    )
    assert row["effective_start_date"] == datetime(2023, 8, 1, tzinfo=UTC)
    assert rows.table.schema == RETAIL_PRICES
    with pytest.raises(RetailPricesError, match=r"item 0 \(Standard P2 Node\) is priced in USD, "):
        retail_prices_table([item], currency="GBP", endpoint="https://x", ingested_at=NOW)


@pytest.mark.parametrize(
    ("price_text", "shown"),
    [
        ("NaN", "nan"),
        ("Infinity", "inf"),
        ("-Infinity", "-inf"),
        ("1e999", "inf"),
        ("-0.02", "-0.02"),
    ],
)
def test_an_answer_with_a_price_that_is_no_price_is_a_failure(
    retail_api, refreshed_once, price_text, shown
):
    # Written into the JSON text as the server would send it: Python's json reads these.
    settings, book_before = refreshed_once
    item = json.loads((FIXTURES / "retail_page1.json").read_text())["Items"][1]
    body = json.dumps({"Items": [{**item, "retailPrice": "PRICE"}], "NextPageLink": None})
    fail_on_page(retail_api, 1, (200, {}, body.replace('"PRICE"', price_text).encode()))
    with pytest.raises(RetailPricesError, match=rf"item 0: retail_price is not a price: {shown}$"):
        refresh_retail_prices(settings, now=NOW + timedelta(days=1), sleep=lambda _: None)
    assert load_price_book(settings) == book_before
