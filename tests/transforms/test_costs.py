"""Cost normalisation: Query API rows and export layouts into the `costs` dataset."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import polars as pl
import pytest

from pricing.units import pricing_units
from transforms import billing
from transforms.costs import (
    CostDataError,
    UnknownLayoutError,
    charge_category_from_charge_type,
    detect_layout,
    parse_day,
    parse_utc_timestamp,
    query_result_to_costs,
    resource_type_from_id,
    to_costs_table,
)
from transforms.schemas import COSTS

INGESTED = datetime(2024, 3, 1, 6, 0, tzinfo=UTC)
SUB = "00000000-0000-0000-0000-0000000000aa"
VM = (
    f"/subscriptions/{SUB.upper()}/resourceGroups/RG-A"
    "/providers/Microsoft.Compute/virtualMachines/VM1"
)
PRICING = f"/subscriptions/{SUB}/providers/Microsoft.Security/pricings/VirtualMachines"

# The collector's request: Daily ActualCost, Cost and UsageQuantity grouped by seven dimensions.
QUERY_COLUMNS = [
    {"name": "Cost", "type": "Number"},
    {"name": "UsageQuantity", "type": "Number"},
    {"name": "UsageDate", "type": "Number"},
    {"name": "ResourceId", "type": "String"},
    {"name": "MeterCategory", "type": "String"},
    {"name": "MeterSubcategory", "type": "String"},
    {"name": "Meter", "type": "String"},
    {"name": "ServiceName", "type": "String"},
    {"name": "ResourceType", "type": "String"},
    {"name": "ChargeType", "type": "String"},
    {"name": "Currency", "type": "String"},
]
QUERY_ROWS = [
    # P1 on a VM for a whole day: 24 h x 0.00672 USD = 0.16128.
    [0.16128, 24, 20240131, VM, "Microsoft Defender for Cloud", "Microsoft Defender for Servers",
     "Standard P1 Node", "Microsoft Defender for Cloud", "microsoft.compute/virtualmachines",
     "usage", "USD"],
    # P2 on the subscription-level pricing id, 10.5 h x 0.02 = 0.21, on the next day (a new month).
    [0.21, 10.5, 20240201, PRICING, "Microsoft Defender for Cloud",
     "Microsoft Defender for Servers", "Standard P2 Node", "Microsoft Defender for Cloud",
     "microsoft.security/pricings", "usage", "USD"],
    # The VM's own compute hours: not a Defender meter, no unit known without a unit column.
    [2.64, 24, 20240131, VM, "Virtual Machines", "Dv3/DSv3 Series", "D2 v3/D2s v3",
     "Virtual Machines", "microsoft.compute/virtualmachines", "usage", "USD"],
]  # fmt: skip


def query_costs(columns=QUERY_COLUMNS, rows=QUERY_ROWS, **overrides) -> pl.DataFrame:
    arguments = {
        "subscription_id": SUB,
        "cost_type": "ActualCost",
        "scope": f"/subscriptions/{SUB}",
        "ingested_at": INGESTED,
        "origin": "test query",
    }
    arguments.update(overrides)
    table = to_costs_table(query_result_to_costs(columns, rows, **arguments), "test query")
    return pl.from_arrow(table)


def test_query_rows_become_daily_utc_costs_with_normalised_ids():
    costs = query_costs()
    assert costs.height == 3
    first = costs.row(0, named=True)
    assert first["charge_period_start"] == datetime(2024, 1, 31, tzinfo=UTC)
    assert first["charge_period_end"] == datetime(2024, 2, 1, tzinfo=UTC)
    assert first["resource_id"] == VM.lower()
    assert first["resource_type"] == "microsoft.compute/virtualmachines"
    assert first["subscription_id"] == SUB
    assert first["sub_account_id"] == f"/subscriptions/{SUB}"
    assert first["sku_meter"] == "Standard P1 Node"
    assert first["meter_subcategory"] == "Microsoft Defender for Servers"
    assert first["charge_category"] == "Usage"
    assert first["charge_description"] is None
    # Defender meters are 1/Hour (billing facts): block size 1, distinct unit Units/Hour.
    assert first["x_unit_of_measure"] == "1/Hour"
    assert first["consumed_unit"] == "Units/Hour"
    assert first["consumed_quantity"] == 24.0
    assert first["billed_cost"] == first["effective_cost"] == 0.16128
    assert (first["billing_currency"], first["cost_type"]) == ("USD", "ActualCost")
    assert (first["cost_source"], first["source"]) == ("query", "query")
    assert first["scope"] == f"/subscriptions/{SUB}"
    assert first["ingested_at"] == INGESTED
    second = costs.row(1, named=True)
    assert second["charge_period_start"] == datetime(2024, 2, 1, tzinfo=UTC)
    assert second["charge_period_end"] == datetime(2024, 2, 2, tzinfo=UTC)
    assert billing.is_subscription_pricing_id(second["resource_id"])
    assert billing.defender_plan(second["sku_meter"]) == "P2"
    assert second["consumed_quantity"] == 10.5
    compute = costs.row(2, named=True)
    assert compute["x_unit_of_measure"] is None
    assert compute["consumed_quantity"] == 24.0


def test_query_columns_are_mapped_by_name_not_position():
    order = list(range(len(QUERY_COLUMNS)))
    random.Random(7).shuffle(order)
    assert order != sorted(order)
    columns = [QUERY_COLUMNS[i] for i in order]
    rows = [[row[i] for i in order] for row in QUERY_ROWS]
    assert query_costs(columns, rows).equals(query_costs())


def test_query_column_names_match_whatever_their_case():
    columns = [{**column, "name": column["name"].upper()} for column in QUERY_COLUMNS]
    assert query_costs(columns).equals(query_costs())


@pytest.mark.parametrize("dropped", ["Meter", "UsageDate", "ResourceId", "Currency"])
def test_query_result_missing_a_needed_column_is_refused_naming_it(dropped):
    keep = [i for i, column in enumerate(QUERY_COLUMNS) if column["name"] != dropped]
    columns = [QUERY_COLUMNS[i] for i in keep]
    rows = [[row[i] for i in keep] for row in QUERY_ROWS]
    with pytest.raises(CostDataError, match=rf"test query: .*missing column\(s\) {dropped}"):
        query_costs(columns, rows)


def test_query_result_of_the_legacy_spec_example_is_refused_naming_what_it_lacks():
    # azure-rest-api-specs cost-management 2025-03-01 example SubscriptionQuery.json (MIT): its
    # columns, one of its rows. It has PreTaxCost but no ResourceId, Meter or UsageQuantity.
    columns = [
        {"name": "PreTaxCost", "type": "Number"},
        {"name": "ResourceGroup", "type": "String"},
        {"name": "UsageDate", "type": "Number"},
        {"name": "Currency", "type": "String"},
    ]
    rows = [[2.10333307059661, "ScreenSharingTest-peer", 20180331, "USD"]]
    missing = r"missing column\(s\) UsageQuantity, ResourceId, Meter"
    with pytest.raises(CostDataError, match=missing):
        query_costs(columns, rows)


def test_pretaxcost_is_the_cost_when_the_result_names_it_so():
    columns = [{**c, "name": "PreTaxCost"} if c["name"] == "Cost" else c for c in QUERY_COLUMNS]
    assert query_costs(columns)["billed_cost"].to_list() == [0.16128, 0.21, 2.64]


def test_two_cost_columns_are_refused_as_ambiguous():
    columns = [*QUERY_COLUMNS, {"name": "PreTaxCost", "type": "Number"}]
    rows = [[*row, 1.0] for row in QUERY_ROWS]
    with pytest.raises(CostDataError, match="both Cost and PreTaxCost"):
        query_costs(columns, rows)


def test_extra_dimension_and_converted_cost_columns_are_ignored():
    columns = [
        *QUERY_COLUMNS,
        {"name": "ResourceGroup", "type": "String"},
        {"name": "CostUSD", "type": "Number"},
    ]
    rows = [[*row, "rg-a", row[0]] for row in QUERY_ROWS]
    assert query_costs(columns, rows).equals(query_costs())


def test_an_extra_number_column_is_refused_naming_it():
    columns = [*QUERY_COLUMNS, {"name": "PreTaxCostWithTax", "type": "Number"}]
    rows = [[*row, 1.0] for row in QUERY_ROWS]
    with pytest.raises(CostDataError, match="unexpected Number column 'PreTaxCostWithTax'"):
        query_costs(columns, rows)


def test_a_unit_column_divides_quantities_by_the_pricing_block_size():
    columns = [*QUERY_COLUMNS, {"name": "UnitOfMeasure", "type": "String"}]
    rows = [[*QUERY_ROWS[2][:1], 250, *QUERY_ROWS[2][2:], "100 Hours"]]
    costs = query_costs(columns, rows)
    # 250 hours priced per block of 100 hours (PricingUnits.csv: 100 Hours -> 100): 2.5.
    assert costs["consumed_quantity"].to_list() == [2.5]
    assert costs["consumed_unit"].to_list() == ["Hours"]
    assert costs["x_unit_of_measure"].to_list() == ["100 Hours"]


def test_an_empty_result_is_an_empty_costs_table():
    costs = query_costs(rows=[])
    assert costs.height == 0
    assert costs.columns == COSTS.names


def test_bad_usage_date_is_refused_naming_the_request():
    rows = [[0.1, 1, 20241345, VM, "c", "s", "m", "n", "t", "usage", "USD"]]
    with pytest.raises(
        CostDataError, match=r"^test query: cannot read cost data: .*'UsageDate'.*20241345"
    ):
        query_costs(rows=rows)


def test_amortized_cost_type_and_subscription_scope_spellings():
    costs = query_costs(cost_type="AmortizedCost", subscription_id=f"/subscriptions/{SUB.upper()}")
    assert set(costs["cost_type"]) == {"AmortizedCost"}
    assert set(costs["subscription_id"]) == {SUB}
    with pytest.raises(CostDataError, match="cost_type"):
        query_costs(cost_type="Usage")
    with pytest.raises(CostDataError, match="not a subscription id"):
        query_costs(subscription_id="rg-a")


# --- building blocks --------------------------------------------------------------------------
def test_vectorised_resource_id_normalisation_is_the_billing_rule():
    values = [
        VM,
        VM + "/",
        f"  {PRICING}  ",
        "/SUBSCRIPTIONS/AB/resourcegroups/rg-a/",
        "",
        "   ",
        "/",
        None,
    ]
    vectorised = pl.select(
        billing.normalise_resource_id_expr(pl.Series("id", values, dtype=pl.String))
    ).to_series()
    assert vectorised.to_list() == [billing.normalise_resource_id(v) for v in values]


def test_resource_type_is_read_from_the_last_provider_segment():
    ids = pl.Series(
        [
            VM,
            "/subscriptions/a/resourceGroups/r/providers/Microsoft.Compute/"
            "virtualMachineScaleSets/ss/virtualMachines/3",
            PRICING,
            "/providers/Microsoft.Capacity/reservationOrders/49ed/reservations",
            "/subscriptions/a/resourceGroups/r",
            None,
        ]
    )
    assert pl.select(resource_type_from_id(ids)).to_series().to_list() == [
        "microsoft.compute/virtualmachines",
        "microsoft.compute/virtualmachinescalesets/virtualmachines",
        "microsoft.security/pricings",
        "microsoft.capacity/reservationorders/reservations",
        None,
        None,
    ]


def test_pricing_block_sizes_from_pricing_units_csv():
    units = dict(pricing_units().select("unit_key", "pricing_block_size").iter_rows())
    # Values read off PricingUnits.csv by eye.
    assert units["10 hours"] == 10
    assert units["100 hours"] == 100
    assert units["1/hour"] == 1
    assert units["1 hour"] == 1
    assert units["10k"] == 10_000


def test_charge_types_map_to_focus_charge_categories():
    charge_types = pl.Series(
        ["Usage", "usage", "Purchase", "Refund", "UnusedReservation", "RoundingAdjustment", None]
    )
    assert pl.select(charge_category_from_charge_type(charge_types)).to_series().to_list() == [
        "Usage",
        "Usage",
        "Purchase",
        "Purchase",
        "Usage",
        "Adjustment",
        None,
    ]


def test_day_and_timestamp_spellings():
    days = pl.Series(["09/21/2023", "9/4/2023", "2023-09-21", "2023-09-21T00:00:00.0000000Z"])
    assert pl.select(parse_day(days)).to_series().to_list() == [
        datetime(2023, 9, 21, tzinfo=UTC),
        datetime(2023, 9, 4, tzinfo=UTC),
        datetime(2023, 9, 21, tzinfo=UTC),
        datetime(2023, 9, 21, tzinfo=UTC),
    ]
    stamps = pl.Series(
        [
            "2024-09-04 00:00:00",
            "2024-09-04T13:00:00Z",
            "2024-09-04T13:00:00.0000000Z",
            "2024-09-04 13:00:00.000000+00:00",
            "2024-09-04",
        ]
    )
    assert pl.select(parse_utc_timestamp(stamps)).to_series().to_list() == [
        datetime(2024, 9, 4, tzinfo=UTC),
        datetime(2024, 9, 4, 13, tzinfo=UTC),
        datetime(2024, 9, 4, 13, tzinfo=UTC),
        datetime(2024, 9, 4, 13, tzinfo=UTC),
        datetime(2024, 9, 4, tzinfo=UTC),
    ]
    with pytest.raises(pl.exceptions.InvalidOperationError):
        pl.select(parse_utc_timestamp(pl.Series(["2024-09-04T13:00:00+02:00"])))


# --- layout detection -------------------------------------------------------------------------
FOCUS_1_0_CORE = [
    "BilledCost", "BillingAccountId", "BillingCurrency", "ChargeCategory", "ChargeDescription",
    "ChargePeriodEnd", "ChargePeriodStart", "ConsumedQuantity", "ConsumedUnit", "EffectiveCost",
    "ResourceId", "ServiceName", "SubAccountId",
]  # fmt: skip
# Microsoft Learn, MCA cost and usage details file schema, version 2023-12-01-preview.
MCA_HEADER = [
    "invoiceId", "previousInvoiceId", "billingAccountId", "billingAccountName", "billingProfileId",
    "billingProfileName", "invoiceSectionId", "invoiceSectionName", "resellerName",
    "resellerMpnId", "costCenter", "billingPeriodEndDate", "billingPeriodStartDate",
    "servicePeriodEndDate", "servicePeriodStartDate", "date", "serviceFamily", "productOrderId",
    "productOrderName", "consumedService", "meterId", "meterName", "meterCategory",
    "meterSubCategory", "meterRegion", "ProductId", "ProductName", "SubscriptionId",
    "subscriptionName", "publisherType", "publisherId", "publisherName", "resourceGroupName",
    "ResourceId", "resourceLocation", "location", "effectivePrice", "quantity", "unitOfMeasure",
    "chargeType", "billingCurrency", "pricingCurrency", "costInBillingCurrency",
    "costInPricingCurrency", "costInUsd", "paygCostInBillingCurrency", "paygCostInUsd",
    "exchangeRatePricingToBilling", "exchangeRateDate", "isAzureCreditEligible", "serviceInfo1",
    "serviceInfo2", "additionalInfo", "tags", "PayGPrice", "frequency", "term", "reservationId",
    "reservationName", "pricingModel", "unitPrice", "costAllocationRuleName", "benefitId",
    "benefitName", "provider",
]  # fmt: skip


def test_focus_versions_are_told_apart_by_columns_added_after_1_0():
    assert detect_layout(FOCUS_1_0_CORE, "f").name == "focus-1.0"
    layout = detect_layout([*FOCUS_1_0_CORE, "SkuMeter", "InvoiceId"], "f")
    assert layout.name == "focus-1.2"
    assert layout.columns["sku_meter"] == "SkuMeter"
    assert layout.source == "export:focus-1.2"


def test_mca_cost_details_are_read_in_their_own_spelling():
    layout = detect_layout(MCA_HEADER, "m")
    assert layout.name == "mca-cost-details"
    assert layout.columns["cost"] == "costInBillingCurrency"
    assert layout.columns["billing_currency"] == "billingCurrency"
    assert layout.columns["meter_name"] == "meterName"


def test_unknown_layout_is_refused_naming_the_missing_columns():
    header = [c for c in FOCUS_1_0_CORE if c not in ("BilledCost", "EffectiveCost")]
    with pytest.raises(UnknownLayoutError) as refused:
        detect_layout(header, "odd.csv")
    message = str(refused.value)
    assert message.startswith("odd.csv: not a cost export mdecost can read")
    assert "As FOCUS it is missing BilledCost, EffectiveCost;" in message
    assert "CostInBillingCurrency|Cost" in message


@pytest.mark.parametrize(
    ("cost", "quantity", "column", "shown"),
    [
        (float("nan"), 24, "billed_cost", "nan"),  # Python's json reads NaN from an answer
        (float("inf"), 24, "billed_cost", "inf"),
        (1e27, 24, "billed_cost", "1e+27"),
        (0.48, -1e12, "consumed_quantity", "-1000000000000.0"),
    ],
)
def test_a_query_api_answer_with_money_that_is_no_money_is_refused(cost, quantity, column, shown):
    rows = [[cost, quantity, 20240131, VM, "c", "s", "Standard P2 Node", "n", "t", "usage", "USD"]]
    with pytest.raises(CostDataError) as refused:
        query_costs(rows=rows)
    assert str(refused.value) == (
        f"test query: {column} {shown} is not a plausible amount (NaN, infinite, or 1e+12 or "
        "more in magnitude)"
    )
