"""The effective-dated price book: which rate applies to an option on a day, in a currency.

Every comparison mdecost makes multiplies hours or seats by a rate, so the rates must be right
for the month being priced. The book is a table in exactly `transforms.schemas.PRICE_BOOK`
(option, kind, unit, rate, currency, effective_from, effective_to, source), one row per option,
currency and period, `effective_to` exclusive and null while a rate is still in force. It is
built from three layers, later ones winning:

1. the shipped book `pricing/list_prices.toml`: LIST prices (public retail, before discounts or
   agreements), optionally replaced or extended by a user book file (`[pricing] book`);
2. Retail Prices API refreshes stored in the lake (`retail_prices`): the API is the authority
   for Defender for Servers list prices, so from a meter's `effectiveStartDate` on, a refreshed
   rate replaces the shipped one where they differ (where they agree the shipped entry stays);
3. the user's settings: `[pricing.discounts]` takes a percentage off list per option, and
   `[pricing.seat_prices]` replaces a seat option's price in the configured currency.

Pure functions build the book (`read_book`, `overlay_books`, `build_price_book`) and answer
look-ups (`price_in_force`, `seat_price_for_month`); `load_price_book` is the thin loader that
reads the shipped file, the user book and the lake. Vectorised pricing of daily frames (a join
on option and date within [effective_from, effective_to)) belongs to transforms.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Any, Final

import polars as pl
import pyarrow as pa

from flows.config import PricingSettings, Settings
from flows.lake import scan_dataset
from transforms.billing import (
    DEFENDER_UNIT,
    HOURLY_OPTIONS,
    MDE_BENEFIT,
    MDE_BENEFIT_OPTIONS,
    RETAIL_PRODUCT_NAME,
    RETAIL_SERVICE_NAME,
    SEAT_OPTIONS,
    defender_meter,
)
from transforms.schemas import PRICE_BOOK

SHIPPED_BOOK_FILE: Final = "list_prices.toml"
KINDS: Final = ("hourly", "seat")
# The unit of one rate, by kind: one server-hour (the Retail Prices API's unitOfMeasure for the
# Defender for Servers meters), or one server seat for one calendar month.
UNIT_OF_KIND: Final = {"hourly": DEFENDER_UNIT, "seat": "1/Month"}
# A price in the config carries no dates: it applies to every month. The epoch stands for "always".
CONFIG_EFFECTIVE_FROM: Final = date(1970, 1, 1)
# Rates are kept to 12 decimal places so that a discount (0.02 x 85 %) does not leave float
# noise (0.016999999999999998) in the warehouse; list prices have at most 6 decimals.
RATE_DECIMALS: Final = 12
# Retail Prices API meters in these regions are not tied to one Azure region.
GLOBAL_REGIONS: Final = frozenset({"", "global"})
RETAIL_LIST_PRICE_TYPE: Final = "Consumption"

_BOOK_KEYS: Final = PRICE_BOOK.names
_OPTIONAL_BOOK_KEYS: Final = frozenset({"effective_to"})
_CUSTOM_OPTION: Final = re.compile(r"^[a-z][a-z0-9_]*$")
_CURRENCY: Final = re.compile(r"^[A-Z]{3}$")


class PricingError(ValueError):
    """Something about prices is wrong; the message names the input and what to do."""


class PriceBookError(PricingError):
    """A price book file is malformed; the message names the file, the entry and the key."""


class PricingConfigError(PricingError):
    """The `[pricing]` settings name an option the book does not have, or an impossible value."""


class PriceLookupError(PricingError, LookupError):
    """No rate is in force for an option, month and currency."""


@dataclass(frozen=True)
class PriceEntry:
    """One row of the price book: `rate` per `unit` of `option`, in force on [from, to)."""

    option: str
    kind: str
    unit: str
    rate: float
    currency: str
    effective_from: date
    effective_to: date | None
    source: str

    def in_force_on(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day < self.effective_to)


@dataclass(frozen=True)
class PricingChoices:
    """The settings the comparison needs besides rates, checked against the book.

    `seats_owned` is not a price: it is how many seats of each seat option the customer already
    bought, which the double-licensing findings compare with the machines protected per hour.
    """

    currency: str
    seat_option: str
    seats_owned: Mapping[str, int]


# --- Reading book files ---------------------------------------------------------------------


def shipped_book() -> pa.Table:
    """The list-price book shipped inside the package (`pricing/list_prices.toml`)."""
    resource = resources.files("pricing") / SHIPPED_BOOK_FILE
    return read_book(resource.read_bytes(), origin=f"pricing/{SHIPPED_BOOK_FILE}")


def read_book_file(path: Path) -> pa.Table:
    """A user book file (`[pricing] book`): same format as the shipped one; it may add custom
    seat options (any lower_snake_case name of kind "seat")."""
    try:
        content = path.read_bytes()
    except OSError as error:
        raise PriceBookError(f"price book {path} cannot be read: {error.strerror}") from None
    return read_book(content, origin=str(path), custom_seat_options=True)


def read_book(content: bytes | str, origin: str, *, custom_seat_options: bool = False) -> pa.Table:
    """Parse and check a price book in TOML (`[[entry]]` tables), returning a PRICE_BOOK table.

    Every problem is a PriceBookError naming `origin`, the entry number (1-based) and the key:
    unknown or missing keys, a kind that does not match the option, a unit other than the
    kind's, a negative or non-numeric rate, a date that is not a date, an empty period, and two
    entries of one option and currency in force on the same day.
    """
    text = content.decode("utf-8") if isinstance(content, bytes) else content
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PriceBookError(f"{origin}: not valid TOML: {error}") from None
    if unexpected := sorted(set(document) - {"entry"}):
        raise PriceBookError(
            f"{origin}: unknown top-level key(s) {', '.join(unexpected)}; "
            "a price book holds only [[entry]] tables"
        )
    raw_entries = document.get("entry")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise PriceBookError(f"{origin}: no [[entry]] tables; a price book needs at least one")
    entries = [
        _parse_entry(raw, f"{origin}: entry {number}", custom_seat_options)
        for number, raw in enumerate(raw_entries, start=1)
    ]
    _refuse_overlaps(entries, [f"{origin}: entry {n}" for n in range(1, len(entries) + 1)])
    return _to_table(entries)


def _parse_entry(raw: Any, where: str, custom_seat_options: bool) -> PriceEntry:
    if not isinstance(raw, dict):
        raise PriceBookError(f"{where}: must be a table of keys")
    option = raw.get("option")
    if isinstance(option, str):
        where = f"{where} ({option})"
    if unexpected := sorted(set(raw) - set(_BOOK_KEYS)):
        raise PriceBookError(
            f"{where}: unknown key(s) {', '.join(unexpected)}; expected {', '.join(_BOOK_KEYS)}"
        )
    if missing := [key for key in _BOOK_KEYS if key not in raw and key not in _OPTIONAL_BOOK_KEYS]:
        raise PriceBookError(f"{where}: missing key(s) {', '.join(missing)}")
    if not isinstance(option, str) or not option:
        raise PriceBookError(f"{where}: option must be a non-empty string")
    kind = raw["kind"]
    if kind not in KINDS:
        raise PriceBookError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    _check_option_kind(option, kind, where, custom_seat_options)
    if raw["unit"] != UNIT_OF_KIND[kind]:
        raise PriceBookError(
            f"{where}: unit of a {kind} option must be {UNIT_OF_KIND[kind]!r}, got {raw['unit']!r}"
        )
    rate = raw["rate"]
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate):
        raise PriceBookError(f"{where}: rate must be a number, got {rate!r}")
    if rate < 0:
        raise PriceBookError(f"{where}: rate must not be negative, got {rate}")
    currency = raw["currency"]
    if not isinstance(currency, str) or not _CURRENCY.match(currency.upper()):
        raise PriceBookError(
            f"{where}: currency must be a three-letter ISO 4217 code, got {currency!r}"
        )
    effective_from = _book_date(raw["effective_from"], f"{where}: effective_from")
    raw_to = raw.get("effective_to", "")
    effective_to = None if raw_to == "" else _book_date(raw_to, f"{where}: effective_to")
    if effective_to is not None and effective_to <= effective_from:
        raise PriceBookError(
            f"{where}: effective_to {effective_to} must be after effective_from {effective_from}"
        )
    source = raw["source"]
    if not isinstance(source, str) or not source.strip():
        raise PriceBookError(f"{where}: source must say where the figure comes from")
    return PriceEntry(
        option=option,
        kind=kind,
        unit=UNIT_OF_KIND[kind],
        rate=float(rate),
        currency=currency.upper(),
        effective_from=effective_from,
        effective_to=effective_to,
        source=source.strip(),
    )


def _check_option_kind(option: str, kind: str, where: str, custom_seat_options: bool) -> None:
    hourly = {*HOURLY_OPTIONS.values(), *MDE_BENEFIT_OPTIONS.values()}
    if option in hourly and kind != "hourly":
        raise PriceBookError(f"{where}: {option} is an hourly option, not {kind!r}")
    if option in SEAT_OPTIONS and kind != "seat":
        raise PriceBookError(f"{where}: {option} is a seat option, not {kind!r}")
    if option in hourly or option in SEAT_OPTIONS:
        return
    known = ", ".join([*sorted(hourly), *SEAT_OPTIONS])
    if not custom_seat_options:
        raise PriceBookError(f"{where}: unknown option {option!r}; known options: {known}")
    if kind != "seat":
        raise PriceBookError(
            f"{where}: a custom option must be of kind 'seat' (the hourly options are the "
            f"Defender for Servers plans: {', '.join(sorted(hourly))})"
        )
    if not _CUSTOM_OPTION.match(option):
        raise PriceBookError(f"{where}: option {option!r} must be lower_snake_case")


def _book_date(value: Any, where: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    open_hint = ' (or "" for still in force)' if where.endswith("effective_to") else ""
    raise PriceBookError(f"{where} must be a date YYYY-MM-DD{open_hint}, got {value!r}")


def _refuse_overlaps(entries: list[PriceEntry], names: list[str]) -> None:
    by_series: dict[tuple[str, str], list[tuple[PriceEntry, str]]] = defaultdict(list)
    for entry, name in zip(entries, names, strict=True):
        by_series[(entry.option, entry.currency)].append((entry, name))
    for series in by_series.values():
        series.sort(key=lambda pair: pair[0].effective_from)
        for (earlier, earlier_name), (later, later_name) in pairwise(series):
            if earlier.effective_to is None or earlier.effective_to > later.effective_from:
                raise PriceBookError(
                    f"{later_name} overlaps {earlier_name}: both price {later.option} in "
                    f"{later.currency} on {later.effective_from}; end the earlier one with "
                    f"effective_to = {later.effective_from}"
                )


def overlay_books(base: pa.Table, replacement: pa.Table) -> pa.Table:
    """`base` with every option and currency that `replacement` prices taken from `replacement`.

    This is how a user book (`[pricing] book`) combines with the shipped one: it replaces the
    shipped entries of the options and currencies it names, keeps the others, and adds options.
    """
    replacing = book_entries(replacement)
    replaced = {(entry.option, entry.currency) for entry in replacing}
    kept = [entry for entry in book_entries(base) if (entry.option, entry.currency) not in replaced]
    return _to_table(kept + replacing)


# --- Retail Prices API rows ------------------------------------------------------------------


def is_trial_or_free(meter_name: str, sku_name: str, retail_price: float) -> bool:
    """Trial meters (`Trial` in the meter or SKU name) are priced 0 and are not list prices."""
    return "trial" in meter_name.lower() or "trial" in sku_name.lower() or retail_price <= 0


def retail_plan_option(row: Mapping[str, Any]) -> str | None:
    """The hourly option a Retail Prices API row lists a price for, or None.

    Only a priced, non-trial, pay-as-you-go (`Consumption`) Defender for Servers meter named as
    in `transforms.billing.DEFENDER_METERS` ("Standard P1 Node", "Standard P2 Node") with unit
    "1/Hour" counts; benefit meters ("Standard P2 Node - MDATP Benefit") and other products do not.
    """
    if row["service_name"] != RETAIL_SERVICE_NAME or row["product_name"] != RETAIL_PRODUCT_NAME:
        return None
    if row["price_type"] != RETAIL_LIST_PRICE_TYPE or row["unit_of_measure"] != DEFENDER_UNIT:
        return None
    if is_trial_or_free(row["meter_name"], row["sku_name"], row["retail_price"]):
        return None
    plan, benefit = defender_meter(row["meter_name"])
    if plan is None:
        return None
    if benefit is None:
        return HOURLY_OPTIONS[plan]
    return MDE_BENEFIT_OPTIONS[plan] if benefit == MDE_BENEFIT else None


def retail_book_entries(retail: pa.Table | pl.DataFrame) -> pa.Table:
    """The hourly list-price timeline the stored Retail Prices API rows establish (PRICE_BOOK).

    Within one refresh, each meter (region) has a price history: its rows ordered by
    `effectiveStartDate` (the API lists an older price beside the current one after a change).
    On each date where some meter's price starts, the plan's price is the `Global` (or
    region-less) meter's if the API lists one, else the price most regional meters have in force
    that day (Defender for Servers is priced the same in most regions; a tie goes to the lower
    price). Refreshes are applied oldest first: a refresh covering days from d on supersedes
    every point an earlier refresh placed at or after d. Each point is in force until the next;
    consecutive points at the same rate are merged, keeping the earlier date.
    """
    rows = retail.to_dicts() if isinstance(retail, pl.DataFrame) else retail.to_pylist()
    snapshots: dict[tuple[str, str, datetime], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        option = retail_plan_option(row)
        if option is not None:
            snapshots[(option, row["currency_code"].upper(), row["ingested_at"])].append(row)
    points: dict[tuple[str, str], dict[date, PriceEntry]] = defaultdict(dict)
    for (option, currency, ingested_at), group in sorted(snapshots.items(), key=lambda i: i[0][2]):
        refreshed = _refresh_timeline(option, currency, ingested_at, group)
        series = points[(option, currency)]
        for superseded in [day for day in series if day >= refreshed[0].effective_from]:
            del series[superseded]
        series.update((point.effective_from, point) for point in refreshed)
    entries: list[PriceEntry] = []
    for series in points.values():
        merged = _merge_equal_rates([series[day] for day in sorted(series)])
        ends = [point.effective_from for point in merged[1:]] + [None]
        entries.extend(
            replace(point, effective_to=end) for point, end in zip(merged, ends, strict=True)
        )
    return _to_table(entries)


def _refresh_timeline(
    option: str, currency: str, ingested_at: datetime, group: list[dict[str, Any]]
) -> list[PriceEntry]:
    """The plan's price points as one refresh lists them (see `retail_book_entries`)."""
    global_rows = [r for r in group if (r["arm_region_name"] or "").lower() in GLOBAL_REGIONS]
    meters: dict[tuple[str, str], list[tuple[date, float]]] = defaultdict(list)
    for row in global_rows or group:
        meters[(row["arm_region_name"] or "", row["meter_id"])].append(
            (_utc_day(row["effective_start_date"]), row["retail_price"])
        )
    for history in meters.values():
        history.sort()
    source = group[0]["source"]
    fetched = ingested_at.astimezone(UTC).date()
    timeline = []
    for day in sorted({start for history in meters.values() for start, _ in history}):
        in_force = [
            prices[-1][1]
            for prices in ([p for p in history if p[0] <= day] for history in meters.values())
            if prices
        ]
        counts = Counter(in_force)
        rate = min(counts, key=lambda price: (-counts[price], price))
        which = (
            "Global meter"
            if global_rows
            else f"price of {counts[rate]} of {len(in_force)} regional meters"
        )
        timeline.append(
            PriceEntry(
                option=option,
                kind="hourly",
                unit=DEFENDER_UNIT,
                rate=float(rate),
                currency=currency,
                effective_from=day,
                effective_to=None,
                source=(
                    f"list price: Azure Retail Prices API {source}, meter "
                    f"{group[0]['meter_name']!r} ({which}), effectiveStartDate {day}, "
                    f"fetched {fetched}"
                ),
            )
        )
    return _merge_equal_rates(timeline)


def _merge_equal_rates(points: list[PriceEntry]) -> list[PriceEntry]:
    merged = points[:1]
    for point in points[1:]:
        if not math.isclose(point.rate, merged[-1].rate, rel_tol=1e-9):
            merged.append(point)
    return merged


def _utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date() if moment.tzinfo else moment.date()


# --- The effective book ----------------------------------------------------------------------


def build_price_book(
    list_prices: pa.Table, retail: pa.Table | pl.DataFrame, pricing: PricingSettings
) -> pa.Table:
    """The effective price book (PRICE_BOOK): list prices, refreshed list prices, then settings.

    `list_prices` is the shipped book (or its overlay with a user book), `retail` the stored
    `retail_prices` rows (RETAIL_PRICES columns; may be empty) and `pricing` the `[pricing]`
    settings. Refreshed rates replace list rates from their effective date where they differ;
    discounts take a percentage off every list rate of their option; a seat price from the config
    replaces its option's rates in the configured currency for every month. Raises
    PricingConfigError naming the settings key when the settings name unknown options.
    """
    listed = book_entries(list_prices)
    refreshed = book_entries(retail_book_entries(retail))
    combined = _overlay_timelines(listed, refreshed)
    check_pricing_settings(pricing, {entry.option: entry.kind for entry in combined})
    return _to_table(_apply_settings(combined, pricing))


def _overlay_timelines(base: list[PriceEntry], newer: list[PriceEntry]) -> list[PriceEntry]:
    """Cut each option-currency timeline at every boundary; on each piece the newer source wins
    unless both agree on the rate, in which case the base entry stands (nothing changed)."""
    series: dict[tuple[str, str], tuple[list[PriceEntry], list[PriceEntry]]] = defaultdict(
        lambda: ([], [])
    )
    for entry in base:
        series[(entry.option, entry.currency)][0].append(entry)
    for entry in newer:
        series[(entry.option, entry.currency)][1].append(entry)
    result: list[PriceEntry] = []
    for base_entries, newer_entries in series.values():
        boundaries = sorted(
            {e.effective_from for e in base_entries + newer_entries}
            | {e.effective_to for e in base_entries + newer_entries if e.effective_to}
        )
        pieces: list[tuple[PriceEntry, date, date | None]] = []
        for start, end in zip(boundaries, [*boundaries[1:], None], strict=True):
            kept = _in_force(base_entries, start)
            newest = _in_force(newer_entries, start)
            chosen = (
                kept
                if newest is None
                or (kept is not None and math.isclose(kept.rate, newest.rate, rel_tol=1e-9))
                else newest
            )
            if chosen is None:
                continue
            if pieces and pieces[-1][0] is chosen and pieces[-1][2] == start:
                pieces[-1] = (chosen, pieces[-1][1], end)
            else:
                pieces.append((chosen, start, end))
        result.extend(
            replace(entry, effective_from=start, effective_to=end) for entry, start, end in pieces
        )
    return result


def _in_force(entries: Iterable[PriceEntry], day: date) -> PriceEntry | None:
    return next((entry for entry in entries if entry.in_force_on(day)), None)


def check_pricing_settings(pricing: PricingSettings, kinds: Mapping[str, str]) -> None:
    """Refuse `[pricing]` settings that name options the book lacks or misuse an option's kind.

    `kinds` maps every option in the book to "hourly" or "seat". Each message names the key.
    """
    seat_options = sorted(option for option, kind in kinds.items() if kind == "seat")
    known = ", ".join(sorted(kinds))
    for table, names in (
        ("discounts", pricing.discounts),
        ("seat_prices", pricing.seat_prices),
        ("seats_owned", pricing.seats_owned),
        ("seat_eligibility", pricing.seat_eligibility),
    ):
        if unknown := sorted(set(names) - set(kinds)):
            raise PricingConfigError(
                f"[pricing.{table}] names unknown option(s) {', '.join(unknown)}; "
                f"the price book has: {known}"
            )
    seat_tables = (
        ("seat_prices", pricing.seat_prices),
        ("seats_owned", pricing.seats_owned),
        ("seat_eligibility", pricing.seat_eligibility),
    )
    for table, names in seat_tables:
        if hourly := sorted(option for option in names if kinds[option] != "seat"):
            raise PricingConfigError(
                f"[pricing.{table}] names hourly option(s) {', '.join(hourly)}, priced per "
                f"server-hour; it takes seat options: {', '.join(seat_options)} "
                "(use [pricing.discounts] for a negotiated hourly rate)"
            )
    for option, price in pricing.seat_prices.items():
        if not math.isfinite(price) or price < 0:
            raise PricingConfigError(
                f"[pricing.seat_prices] {option} must be a price of zero or more, got {price}"
            )
    for option, seats in pricing.seats_owned.items():
        if seats < 0:
            raise PricingConfigError(
                f"[pricing.seats_owned] {option} must be a number of seats, got {seats}"
            )
    if both := sorted(set(pricing.seat_prices) & set(pricing.discounts)):
        raise PricingConfigError(
            f"[pricing.seat_prices] and [pricing.discounts] both name {', '.join(both)}: a seat "
            "price from the config is already what you pay; keep one of the two"
        )
    if kinds.get(pricing.seat_option) != "seat":
        raise PricingConfigError(
            f"[pricing] seat_option {pricing.seat_option!r} is not a seat option in the price "
            f"book; choose one of: {', '.join(seat_options)}"
        )


def _apply_settings(entries: list[PriceEntry], pricing: PricingSettings) -> list[PriceEntry]:
    result = []
    for entry in entries:
        if entry.option in pricing.seat_prices and entry.currency == pricing.currency:
            continue
        percent = pricing.discounts.get(entry.option)
        if percent:
            entry = replace(
                entry,
                rate=round(entry.rate * (100 - percent) / 100, RATE_DECIMALS),
                source=f"{entry.source}; less {percent:g}% discount ([pricing.discounts])",
            )
        result.append(entry)
    for option, price in pricing.seat_prices.items():
        result.append(
            PriceEntry(
                option=option,
                kind="seat",
                unit=UNIT_OF_KIND["seat"],
                rate=float(price),
                currency=pricing.currency,
                effective_from=CONFIG_EFFECTIVE_FROM,
                effective_to=None,
                source=f"config: [pricing.seat_prices] {option}",
            )
        )
    return result


def pricing_choices(pricing: PricingSettings, book: pa.Table) -> PricingChoices:
    """The currency, the seat option compared against and the seats already owned, checked
    against the options of `book`."""
    check_pricing_settings(pricing, {entry.option: entry.kind for entry in book_entries(book)})
    return PricingChoices(
        currency=pricing.currency,
        seat_option=pricing.seat_option,
        seats_owned=dict(pricing.seats_owned),
    )


def load_price_book(settings: Settings, retail: pa.Table | pl.DataFrame | None = None) -> pa.Table:
    """The effective price book for `settings`: shipped book (overlaid by `[pricing] book` if
    set), the lake's `retail_prices` rows (or `retail`, to preview a refresh), the settings.

    This table is also what the warehouse exposes as the `prices` view.
    """
    list_prices = shipped_book()
    if settings.pricing.book is not None:
        list_prices = overlay_books(list_prices, read_book_file(settings.pricing.book))
    if retail is None:
        retail = scan_dataset(settings.lake.location(), "retail_prices").collect()
    return build_price_book(list_prices, retail, settings.pricing)


# --- Look-ups --------------------------------------------------------------------------------


def price_in_force(book: pa.Table, option: str, on: date, currency: str) -> PriceEntry:
    """The book entry whose rate applies to `option` on day `on`, in `currency`.

    Raises PriceLookupError naming the option, the month and the currency when the book has no
    such option, no price in that currency, or no rate in force that day.
    """
    month = f"{on:%Y-%m}"
    entries = [entry for entry in book_entries(book) if entry.option == option]
    if not entries:
        known = ", ".join(sorted({entry.option for entry in book_entries(book)}))
        raise PriceLookupError(
            f"no price for option {option!r} (month {month}, currency {currency}): "
            f"the price book has {known}"
        )
    in_currency = [entry for entry in entries if entry.currency == currency]
    if not in_currency:
        held = ", ".join(sorted({entry.currency for entry in entries}))
        remedy = (
            f'run `mdecost prices refresh` with [pricing] currency = "{currency}"'
            if entries[0].kind == "hourly"
            else f"set [pricing.seat_prices] {option} in {currency}"
        )
        raise PriceLookupError(
            f"the price book has no {currency} price for {option} (month {month}); it has "
            f"{held}: {remedy}"
        )
    in_force = [entry for entry in in_currency if entry.in_force_on(on)]
    if len(in_force) > 1:
        raise PriceLookupError(
            f"the price book has {len(in_force)} {option} rates in {currency} in force on {on} "
            f"(month {month}); its entries must not overlap"
        )
    if not in_force:
        covered = "; ".join(
            f"[{entry.effective_from}, {entry.effective_to or 'open'})"
            for entry in sorted(in_currency, key=lambda entry: entry.effective_from)
        )
        raise PriceLookupError(
            f"no {option} rate in {currency} is in force on {on} (month {month}); the book "
            f"covers {covered}: add an entry to a [pricing] book file for that period"
        )
    return in_force[0]


def seat_price_for_month(book: pa.Table, option: str, month: date, currency: str) -> PriceEntry:
    """The price of one seat of `option` for the calendar month containing `month`.

    A seat is bought for a whole month, so the month is priced at the rate in force on its
    first day.
    """
    entry = price_in_force(book, option, month.replace(day=1), currency)
    if entry.kind != "seat":
        raise PriceLookupError(
            f"{option} is an hourly option, priced per server-hour, not per seat "
            f"(month {month:%Y-%m}, currency {currency})"
        )
    return entry


# --- Table conversion ------------------------------------------------------------------------


def book_entries(book: pa.Table) -> list[PriceEntry]:
    """The rows of a PRICE_BOOK table as PriceEntry values."""
    return [PriceEntry(**{key: row[key] for key in _BOOK_KEYS}) for row in book.to_pylist()]


def _to_table(entries: Iterable[PriceEntry]) -> pa.Table:
    ordered = sorted(entries, key=lambda e: (e.option, e.currency, e.effective_from))
    columns = {key: [getattr(entry, key) for entry in ordered] for key in _BOOK_KEYS}
    return pa.Table.from_pydict(columns, schema=PRICE_BOOK)
