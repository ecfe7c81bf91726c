"""The price book: shipped list prices, refreshed list prices, the user's discounts and overrides,
and the rate in force for an option on a day."""

from datetime import UTC, date, datetime, timedelta
from importlib import resources

import pyarrow as pa
import pytest

from flows.config import PricingSettings, Settings
from pricing.book import (
    CONFIG_EFFECTIVE_FROM,
    PriceBookError,
    PriceLookupError,
    PricingConfigError,
    build_price_book,
    load_price_book,
    overlay_books,
    price_in_force,
    pricing_choices,
    read_book,
    retail_book_entries,
    seat_price_for_month,
    shipped_book,
)
from transforms.schemas import PRICE_BOOK, RETAIL_PRICES

NO_RETAIL = RETAIL_PRICES.empty_table()
ENDPOINT = "https://prices.azure.com/api/retail/prices"


def retail_row(
    meter: str = "Standard P2 Node",
    price: float = 0.02,
    region: str | None = "eastus",
    start: date = date(2024, 6, 1),
    fetched: datetime = datetime(2026, 11, 20, 6, tzinfo=UTC),
    currency: str = "USD",
    sku: str | None = None,
    price_type: str = "Consumption",
    unit: str = "1/Hour",
) -> dict:
    """One stored Retail Prices API row, as `mdecost prices refresh` writes it to the lake."""
    return {
        "meter_id": f"{meter}-{region}",
        "meter_name": meter,
        "sku_name": sku if sku is not None else meter.removesuffix(" Node"),
        "product_name": "Microsoft Defender for Servers",
        "service_name": "Microsoft Defender for Cloud",
        "arm_region_name": region,
        "unit_of_measure": unit,
        "unit_price": price,
        "retail_price": price,
        "currency_code": currency,
        "effective_start_date": datetime(start.year, start.month, start.day, tzinfo=UTC),
        "price_type": price_type,
        "ingested_at": fetched,
        "source": ENDPOINT,
        "scope": f"Microsoft Defender for Servers ({currency})",
    }


def retail(*rows: dict) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=RETAIL_PRICES)


def book_text(*entries: str) -> str:
    return "\n".join(f"[[entry]]\n{entry}" for entry in entries)


def entry_text(
    option: str = "defender_servers_p2",
    kind: str = "hourly",
    unit: str = "1/Hour",
    rate: str = "0.02",
    currency: str = "USD",
    effective_from: str = "2024-01-01",
    effective_to: str = '""',
    source: str = '"test"',
) -> str:
    return (
        f'option = "{option}"\nkind = "{kind}"\nunit = "{unit}"\nrate = {rate}\n'
        f'currency = "{currency}"\neffective_from = {effective_from}\n'
        f"effective_to = {effective_to}\nsource = {source}\n"
    )


def rates_by_option(book: pa.Table, currency: str = "USD") -> dict[str, list[tuple]]:
    found: dict[str, list[tuple]] = {}
    for row in book.to_pylist():
        if row["currency"] == currency:
            found.setdefault(row["option"], []).append(
                (row["effective_from"], row["effective_to"], row["rate"])
            )
    return found


# --- The shipped book -----------------------------------------------------------------------


def test_the_shipped_book_is_package_data_with_the_list_prices():
    assert resources.files("pricing").joinpath("list_prices.toml").is_file()
    book = shipped_book()
    assert book.schema == PRICE_BOOK
    rows = {row["option"]: row for row in book.to_pylist()}
    assert {
        option: (row["kind"], row["unit"], row["rate"], row["currency"])
        for option, row in rows.items()
    } == {
        "defender_servers_p1": ("hourly", "1/Hour", 0.00672, "USD"),
        "defender_servers_p2": ("hourly", "1/Hour", 0.02, "USD"),
        "mde_for_servers": ("seat", "1/Month", 5.00, "USD"),
        "defender_business_servers": ("seat", "1/Month", 3.00, "USD"),
    }
    assert all(row["effective_to"] is None and row["source"] for row in rows.values())
    header = resources.files("pricing").joinpath("list_prices.toml").read_text()
    assert "LIST prices" in header.splitlines()[0]


def test_without_refreshes_or_settings_the_effective_book_is_the_shipped_book():
    assert build_price_book(shipped_book(), NO_RETAIL, PricingSettings()) == shipped_book()


# --- A month spanning a price change ---------------------------------------------------------


def test_a_month_spanning_a_price_change_prices_each_day_at_its_own_rate():
    # A refresh on 2026-11-20 finds P2 at 0.025 USD since 2026-11-16 in every region.
    refreshed = retail(
        *(retail_row(price=0.025, region=r, start=date(2026, 11, 16)) for r in ("eastus", "westeu"))
    )
    book = build_price_book(shipped_book(), refreshed, PricingSettings())
    # A machine billable 24 h on each of the 30 days of November 2026:
    # days 1-15 at 0.02  -> 15 * 24 * 0.02  = 7.20
    # days 16-30 at 0.025 -> 15 * 24 * 0.025 = 9.00; total 16.20 USD.
    total = sum(
        24
        * price_in_force(book, "defender_servers_p2", date(2026, 11, 1) + timedelta(d), "USD").rate
        for d in range(30)
    )
    assert total == pytest.approx(16.20, abs=1e-9)
    assert rates_by_option(book)["defender_servers_p2"] == [
        (date(2024, 1, 1), date(2026, 11, 16), 0.02),
        (date(2026, 11, 16), None, 0.025),
    ]
    change = price_in_force(book, "defender_servers_p2", date(2026, 11, 16), "USD")
    assert "Azure Retail Prices API" in change.source and "2026-11-16" in change.source
    # P1 did not change: the refresh added nothing for it.
    assert rates_by_option(book)["defender_servers_p1"] == [(date(2024, 1, 1), None, 0.00672)]


def test_a_price_change_written_in_a_user_book_file_is_priced_the_same_way():
    user = read_book(
        book_text(
            entry_text(effective_to="2026-11-16"),
            entry_text(rate="0.025", effective_from="2026-11-16"),
        ),
        origin="my-book.toml",
        custom_seat_options=True,
    )
    book = build_price_book(overlay_books(shipped_book(), user), NO_RETAIL, PricingSettings())
    # Same month, same machine: 15 days x 24 h x 0.02 + 15 days x 24 h x 0.025 = 16.20
    total = sum(
        24
        * price_in_force(book, "defender_servers_p2", date(2026, 11, 1) + timedelta(d), "USD").rate
        for d in range(30)
    )
    assert total == pytest.approx(16.20, abs=1e-9)


def test_a_seat_is_priced_at_the_rate_in_force_on_the_first_day_of_its_month():
    user = read_book(
        book_text(
            entry_text("mde_for_servers", "seat", "1/Month", "5.0", effective_to="2026-11-16"),
            entry_text("mde_for_servers", "seat", "1/Month", "6.0", effective_from="2026-11-16"),
        ),
        origin="my-book.toml",
        custom_seat_options=True,
    )
    book = build_price_book(overlay_books(shipped_book(), user), NO_RETAIL, PricingSettings())
    assert seat_price_for_month(book, "mde_for_servers", date(2026, 11, 20), "USD").rate == 5.0
    assert seat_price_for_month(book, "mde_for_servers", date(2026, 12, 1), "USD").rate == 6.0
    with pytest.raises(PriceLookupError, match="hourly option"):
        seat_price_for_month(book, "defender_servers_p2", date(2026, 11, 1), "USD")


# --- Refreshed Retail Prices rows -------------------------------------------------------------


def test_a_refresh_that_confirms_the_list_price_leaves_the_book_as_shipped():
    # The API says P2 has cost 0.02 since 2024-01-01: nothing changed, nothing added.
    confirmed = retail(retail_row(price=0.02, start=date(2024, 1, 1)))
    assert build_price_book(shipped_book(), confirmed, PricingSettings()) == shipped_book()


def test_a_refresh_with_an_older_effective_date_extends_the_book_backwards():
    # P2 0.02 since 2021-06-01 per the API: the API vouches for 2021-06-01 .. 2023-12-31, the
    # shipped entry still stands from 2024-01-01 (both agree on the rate there).
    older = retail(retail_row(price=0.02, start=date(2021, 6, 1)))
    book = build_price_book(shipped_book(), older, PricingSettings())
    assert rates_by_option(book)["defender_servers_p2"] == [
        (date(2021, 6, 1), date(2024, 1, 1), 0.02),
        (date(2024, 1, 1), None, 0.02),
    ]
    assert price_in_force(book, "defender_servers_p2", date(2022, 3, 1), "USD").source.startswith(
        "list price: Azure Retail Prices API"
    )


def test_the_global_meter_price_wins_else_the_price_most_regions_share():
    with_global = retail(
        retail_row(price=0.03, region="eastus"),
        retail_row(price=0.03, region="westeurope"),
        retail_row(price=0.021, region="Global", start=date(2025, 1, 1)),
    )
    entries = retail_book_entries(with_global).to_pylist()
    assert [(e["option"], e["rate"], e["effective_from"]) for e in entries] == [
        ("defender_servers_p2", 0.021, date(2025, 1, 1))
    ]
    regional = retail(
        retail_row(price=0.02, region="eastus"),
        retail_row(price=0.02, region="westeurope"),
        retail_row(price=0.024, region="brazilsouth"),
    )
    assert [e["rate"] for e in retail_book_entries(regional).to_pylist()] == [0.02]
    tied = retail(retail_row(price=0.02, region="eastus"), retail_row(price=0.019, region="x"))
    assert [e["rate"] for e in retail_book_entries(tied).to_pylist()] == [0.019]


def test_a_refresh_listing_older_prices_beside_current_ones_yields_the_plan_history():
    # westeurope alone listed 0.0186 before 2025-04-01; most regions were at 0.02 all along.
    one_region_differs = retail(
        retail_row(price=0.02, region="eastus", start=date(2023, 8, 1)),
        retail_row(price=0.02, region="northeurope", start=date(2023, 8, 1)),
        retail_row(price=0.0186, region="westeurope", start=date(2024, 1, 1)),
        retail_row(price=0.02, region="westeurope", start=date(2025, 4, 1)),
    )
    entries = retail_book_entries(one_region_differs).to_pylist()
    assert [(e["effective_from"], e["effective_to"], e["rate"]) for e in entries] == [
        (date(2023, 8, 1), None, 0.02)
    ]
    # Two of three regions were at 0.018 until 2025-04-01: that was the plan's price then.
    most_regions_changed = retail(
        retail_row(price=0.018, region="eastus", start=date(2023, 8, 1)),
        retail_row(price=0.02, region="eastus", start=date(2025, 4, 1)),
        retail_row(price=0.018, region="westeurope", start=date(2023, 8, 1)),
        retail_row(price=0.02, region="westeurope", start=date(2025, 4, 1)),
        retail_row(price=0.02, region="northeurope", start=date(2023, 8, 1)),
    )
    entries = retail_book_entries(most_regions_changed).to_pylist()
    assert [(e["effective_from"], e["effective_to"], e["rate"]) for e in entries] == [
        (date(2023, 8, 1), date(2025, 4, 1), 0.018),
        (date(2025, 4, 1), None, 0.02),
    ]
    assert "price of 2 of 3 regional meters" in entries[0]["source"]


def test_trial_free_and_non_list_meters_add_no_prices():
    noise = retail(
        retail_row(meter="Standard P2 Node", sku="Standard P2 Trial", price=0.0),
        retail_row(meter="Trial P2 Node", price=0.05),
        retail_row(meter="Standard P2 Node", price=0.0),
        retail_row(meter="Standard P2 Node - Some Other Variant", price=0.015),
        retail_row(meter="Standard P2 Node", price=0.01, price_type="DevTestConsumption"),
        retail_row(meter="Standard P2 Node", price=0.2, unit="10 Hours"),
    )
    assert retail_book_entries(noise).num_rows == 0


def test_a_benefit_meter_is_its_plans_benefit_option():
    # "Standard P2 Node - MDATP Benefit" at 0.015: the P2 rate once the MDE part is discounted.
    entries = retail_book_entries(
        retail(retail_row(meter="Standard P2 Node - MDATP Benefit", price=0.015))
    ).to_pylist()
    assert [(e["option"], e["kind"], e["rate"]) for e in entries] == [
        ("defender_servers_p2_mde_benefit", "hourly", 0.015)
    ]


def test_a_later_refresh_supersedes_what_an_earlier_one_placed_after_its_date():
    # 2026-11-20: 0.025 since 2026-11-16. 2026-12-05: the API says 0.02 since 2024-06-01, i.e.
    # the increase was withdrawn; 0.02 is in force again throughout.
    refreshes = retail(
        retail_row(price=0.025, start=date(2026, 11, 16)),
        retail_row(price=0.02, start=date(2024, 6, 1), fetched=datetime(2026, 12, 5, tzinfo=UTC)),
    )
    entries = retail_book_entries(refreshes).to_pylist()
    assert [(e["effective_from"], e["effective_to"], e["rate"]) for e in entries] == [
        (date(2024, 6, 1), None, 0.02)
    ]


def test_each_currency_gets_its_own_timeline():
    book = build_price_book(
        shipped_book(),
        retail(retail_row(price=0.0185, currency="EUR", start=date(2025, 4, 1))),
        PricingSettings(currency="EUR", seat_prices={"mde_for_servers": 4.6}),
    )
    assert price_in_force(book, "defender_servers_p2", date(2026, 10, 5), "EUR").rate == 0.0185
    assert price_in_force(book, "defender_servers_p2", date(2026, 10, 5), "USD").rate == 0.02
    assert price_in_force(book, "mde_for_servers", date(2026, 10, 5), "EUR").rate == 4.6
    assert price_in_force(book, "mde_for_servers", date(2026, 10, 5), "USD").rate == 5.0


# --- Discounts and overrides ------------------------------------------------------------------


def test_a_discount_takes_a_percentage_off_every_list_rate_of_its_option():
    refreshed = retail(retail_row(price=0.025, start=date(2026, 11, 16)))
    book = build_price_book(
        shipped_book(), refreshed, PricingSettings(discounts={"defender_servers_p2": 15})
    )
    # 15 % off 0.02 = 0.02 x 0.85 = 0.017; off 0.025 = 0.02125.
    assert rates_by_option(book)["defender_servers_p2"] == [
        (date(2024, 1, 1), date(2026, 11, 16), 0.017),
        (date(2026, 11, 16), None, 0.02125),
    ]
    assert (
        "less 15% discount"
        in price_in_force(book, "defender_servers_p2", date(2026, 1, 1), "USD").source
    )
    assert rates_by_option(book)["defender_servers_p1"] == [(date(2024, 1, 1), None, 0.00672)]


def test_a_seat_price_from_the_config_replaces_the_list_price_in_every_month():
    book = build_price_book(
        shipped_book(),
        NO_RETAIL,
        PricingSettings(
            seat_prices={"mde_for_servers": 4.5}, discounts={"defender_business_servers": 10}
        ),
    )
    override = price_in_force(book, "mde_for_servers", date(2023, 5, 1), "USD")
    assert (override.rate, override.source) == (
        4.5,
        "config: [pricing.seat_prices] mde_for_servers",
    )
    assert rates_by_option(book)["mde_for_servers"] == [(CONFIG_EFFECTIVE_FROM, None, 4.5)]
    # 10 % off the 3.00 list price = 2.70
    assert price_in_force(book, "defender_business_servers", date(2026, 1, 1), "USD").rate == 2.7


def test_choices_expose_the_seat_option_currency_and_seats_owned():
    settings = PricingSettings(
        seat_option="defender_business_servers", seats_owned={"mde_for_servers": 120}
    )
    choices = pricing_choices(settings, build_price_book(shipped_book(), NO_RETAIL, settings))
    assert (choices.currency, choices.seat_option, dict(choices.seats_owned)) == (
        "USD",
        "defender_business_servers",
        {"mde_for_servers": 120},
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"discounts": {"defender_servers_p3": 10, "defender_servers_p2": 5}},
            r"\[pricing\.discounts\] names unknown option\(s\) defender_servers_p3",
        ),
        (
            {"seat_prices": {"mde_for_server": 4.5}},
            r"\[pricing\.seat_prices\] names unknown option\(s\) mde_for_server",
        ),
        (
            {"seats_owned": {"e5": 10}},
            r"\[pricing\.seats_owned\] names unknown option\(s\) e5",
        ),
        (
            {"seat_prices": {"defender_servers_p2": 14.6}},
            r"\[pricing\.seat_prices\] names hourly option\(s\) defender_servers_p2",
        ),
        (
            {"seat_eligibility": {"defender_business_server": False}},
            r"\[pricing\.seat_eligibility\] names unknown option\(s\) defender_business_server",
        ),
        (
            {"seat_eligibility": {"defender_servers_p1": True}},
            r"\[pricing\.seat_eligibility\] names hourly option\(s\) defender_servers_p1",
        ),
        (
            {"seat_option": "defender_servers_p1"},
            r"\[pricing\] seat_option 'defender_servers_p1' is not a seat option",
        ),
        (
            {"seat_prices": {"mde_for_servers": -1.0}},
            r"\[pricing\.seat_prices\] mde_for_servers must be a price of zero or more",
        ),
        (
            {"seats_owned": {"mde_for_servers": -3}},
            r"\[pricing\.seats_owned\] mde_for_servers must be a number of seats",
        ),
        (
            {"seat_prices": {"mde_for_servers": 4.0}, "discounts": {"mde_for_servers": 10}},
            r"both name mde_for_servers",
        ),
    ],
)
def test_settings_naming_unknown_options_or_impossible_values_are_refused(settings, message):
    with pytest.raises(PricingConfigError, match=message):
        build_price_book(shipped_book(), NO_RETAIL, PricingSettings(**settings))


# --- Look-up errors ---------------------------------------------------------------------------


def test_a_month_without_a_rate_in_force_names_option_month_and_currency():
    book = shipped_book()
    with pytest.raises(PriceLookupError) as raised:
        price_in_force(book, "defender_servers_p2", date(2023, 7, 14), "USD")
    assert str(raised.value).startswith(
        "no defender_servers_p2 rate in USD is in force on 2023-07-14 (month 2023-07); "
        "the book covers [2024-01-01, open)"
    )


def test_a_currency_the_book_lacks_names_option_month_and_currency():
    with pytest.raises(PriceLookupError) as raised:
        price_in_force(shipped_book(), "defender_servers_p1", date(2026, 10, 1), "EUR")
    assert str(raised.value) == (
        "the price book has no EUR price for defender_servers_p1 (month 2026-10); it has USD: "
        'run `mdecost prices refresh` with [pricing] currency = "EUR"'
    )
    with pytest.raises(PriceLookupError, match=r"set \[pricing\.seat_prices\] mde_for_servers"):
        price_in_force(shipped_book(), "mde_for_servers", date(2026, 10, 1), "GBP")
    with pytest.raises(PriceLookupError, match=r"no price for option 'e5' \(month 2026-10"):
        price_in_force(shipped_book(), "e5", date(2026, 10, 1), "USD")


# --- Malformed book files ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[entry]\noption = 1", r"^book\.toml: not valid TOML: "),
        ("title = 'x'\n", r"^book\.toml: unknown top-level key\(s\) title"),
        ("", r"^book\.toml: no \[\[entry\]\] tables"),
        (
            book_text(entry_text(), entry_text(rate='"cheap"', effective_from="2027-01-01")),
            r"^book\.toml: entry 2 \(defender_servers_p2\): rate must be a number, got 'cheap'",
        ),
        (
            book_text(entry_text() + "discount = 3\n"),
            r"^book\.toml: entry 1 \(defender_servers_p2\): unknown key\(s\) discount",
        ),
        (
            book_text(entry_text().replace('source = "test"\n', "")),
            r"entry 1 \(defender_servers_p2\): missing key\(s\) source",
        ),
        (
            book_text(entry_text(kind="seat", unit="1/Month")),
            r"entry 1 \(defender_servers_p2\): defender_servers_p2 is an hourly option",
        ),
        (
            book_text(entry_text(unit="1 Hour")),
            r"entry 1 \(defender_servers_p2\): unit of a hourly option must be '1/Hour'",
        ),
        (book_text(entry_text(rate="-0.02")), r"entry 1 .*rate must not be negative"),
        (book_text(entry_text(currency="dollars")), r"entry 1 .*three-letter ISO 4217 code"),
        (
            book_text(entry_text(effective_from='"January"')),
            r"entry 1 \(defender_servers_p2\): effective_from must be a date YYYY-MM-DD, got",
        ),
        (
            book_text(entry_text(effective_to="2024-01-01")),
            r"entry 1 .*effective_to 2024-01-01 must be after effective_from 2024-01-01",
        ),
        (
            book_text(entry_text(), entry_text(rate="0.025", effective_from="2026-11-16")),
            r"^book\.toml: entry 2 overlaps book\.toml: entry 1: both price defender_servers_p2 "
            r"in USD on 2026-11-16; end the earlier one with effective_to = 2026-11-16",
        ),
        (
            book_text(entry_text("my_seats", "seat", "1/Month", "4.0")),
            r"entry 1 \(my_seats\): unknown option 'my_seats'; known options:",
        ),
    ],
)
def test_a_malformed_book_is_an_error_naming_file_entry_and_key(text, message):
    with pytest.raises(PriceBookError, match=message):
        read_book(text, origin="book.toml")


def test_a_user_book_may_add_custom_seat_options_but_not_hourly_ones():
    custom = read_book(
        book_text(entry_text("e5_servers", "seat", "1/Month", "4.0")),
        origin="mine.toml",
        custom_seat_options=True,
    )
    combined = overlay_books(shipped_book(), custom)
    book = build_price_book(combined, NO_RETAIL, PricingSettings(seat_option="e5_servers"))
    assert price_in_force(book, "e5_servers", date(2026, 1, 1), "USD").rate == 4.0
    with pytest.raises(PriceBookError, match=r"mine\.toml: entry 1 \(p3\): a custom option must"):
        read_book(book_text(entry_text("p3")), origin="mine.toml", custom_seat_options=True)


def test_a_user_book_replaces_the_shipped_entries_of_the_option_and_currency_it_prices():
    user = read_book(book_text(entry_text(rate="0.018")), origin="mine.toml")
    combined = overlay_books(shipped_book(), user)
    assert rates_by_option(combined)["defender_servers_p2"] == [(date(2024, 1, 1), None, 0.018)]
    assert rates_by_option(combined)["defender_servers_p1"] == [(date(2024, 1, 1), None, 0.00672)]


def test_the_loader_reads_the_user_book_named_in_the_settings(tmp_path):
    user_book = tmp_path / "negotiated.toml"
    user_book.write_text(book_text(entry_text("e5_servers", "seat", "1/Month", "4.0")))
    settings = Settings(
        lake={"path": tmp_path / "lake"},
        pricing={"book": user_book, "seat_option": "e5_servers"},
    )
    book = load_price_book(settings)
    assert price_in_force(book, "e5_servers", date(2026, 1, 1), "USD").rate == 4.0
    assert price_in_force(book, "defender_servers_p2", date(2026, 1, 1), "USD").rate == 0.02
    missing = Settings(lake={"path": tmp_path / "lake"}, pricing={"book": tmp_path / "nope.toml"})
    with pytest.raises(PriceBookError, match=r"price book .*nope\.toml cannot be read"):
        load_price_book(missing)
