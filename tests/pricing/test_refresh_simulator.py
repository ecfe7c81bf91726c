"""`mdecost prices refresh` against the simulated estate's Retail Prices API (HTTPS, loopback).

The simulated price list (flows/simulator/catalog.py) is, per region (eastus, westeurope,
northeurope, uksouth, southeastasia): Standard P1 Node 0.00672 and Standard P2 Node 0.02 USD per
hour since 2023-08-01, and zero-priced trial meters "Standard P1 Trial Node" / "Standard P2 Trial
Node"; westeurope also lists its earlier P2 price, 0.0186 from 2024-01-01 (0.02 from 2025-04-01).
Other currencies are USD times a fixed rate (EUR 0.9215), rounded to 6 decimals.
"""

from datetime import UTC, date, datetime

import pytest

from flows.config import LakeSettings, Settings
from flows.lake import scan_dataset
from pricing.book import load_price_book, price_in_force
from pricing.retail import refresh_retail_prices

NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)

pytestmark = pytest.mark.simulator


def private_lake(simulator, tmp_path, currency: str = "USD") -> Settings:
    """The simulator's settings with a lake of this test's own: the session estate's lake is
    shared by every test and must not gain retail prices from this one."""
    settings = simulator.settings()
    return settings.model_copy(
        update={
            "lake": LakeSettings(path=tmp_path / "lake"),
            "pricing": settings.pricing.model_copy(update={"currency": currency}),
        }
    )


def test_refresh_follows_every_page_and_ignores_the_trial_meters(simulator, tmp_path):
    settings = private_lake(simulator, tmp_path)
    requests_before = simulator.requests["retail_prices"]
    result = refresh_retail_prices(settings, now=NOW)
    # 5 regions x (P1, P2, P1 trial, P2 trial) = 20 items + westeurope's earlier P2 price = 21,
    # served 7 a page: 3 pages. The 10 trial meters are dropped: 11 rows stored.
    assert simulator.requests["retail_prices"] - requests_before == 3
    assert (result.pages, result.items, result.trial_or_free_ignored, result.stored) == (
        3,
        21,
        10,
        11,
    )
    stored = scan_dataset(settings.lake.path, "retail_prices").collect()
    assert sorted(stored["meter_name"].unique().to_list()) == [
        "Standard P1 Node",
        "Standard P2 Node",
    ]
    assert stored.filter(stored["retail_price"] == 0).height == 0

    # Most regions charged P2 0.02 since 2023-08-01 (westeurope's 0.0186 is one region of five):
    # the API vouches for 0.02 before the shipped book's 2024-01-01, and nothing changed after.
    book = load_price_book(settings)
    changes = {(e.option, e.effective_from, e.effective_to, e.rate) for e in result.new_entries}
    assert changes == {
        ("defender_servers_p1", date(2023, 8, 1), date(2024, 1, 1), 0.00672),
        ("defender_servers_p2", date(2023, 8, 1), date(2024, 1, 1), 0.02),
    }
    assert price_in_force(book, "defender_servers_p2", date(2024, 6, 1), "USD").rate == 0.02


def test_refresh_in_euros_adds_euro_prices(simulator, tmp_path):
    settings = private_lake(simulator, tmp_path, currency="EUR")
    result = refresh_retail_prices(settings, now=NOW)
    assert result.partition.parent.name == "currency=EUR"
    book = load_price_book(settings)
    # 0.02 x 0.9215 = 0.01843; 0.00672 x 0.9215 = 0.00619248 -> 0.006192 (6 decimals)
    assert price_in_force(book, "defender_servers_p2", date(2026, 10, 1), "EUR").rate == 0.01843
    assert price_in_force(book, "defender_servers_p1", date(2026, 10, 1), "EUR").rate == 0.006192
    assert price_in_force(book, "defender_servers_p2", date(2023, 8, 1), "EUR").effective_from == (
        date(2023, 8, 1)
    )
