"""`mdecost import-costs`: real and hand-written Cost Management export files into `costs`.

Expected figures were worked out apart from mdecost: the real samples' totals with a one-off
Python script (csv.DictReader with encoding utf-8-sig, decimal.Decimal sums of the file's own
cost columns, len() of the rows), the hand-written files' by hand from their few rows.
"""

from __future__ import annotations

import csv
import gzip
import math
import shutil
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from flows.exports import cost_type_from_path, export_files, import_cost_exports
from transforms import billing
from transforms.costs import CostDataError, UnknownLayoutError
from transforms.schemas import COSTS

FIXTURES = Path(__file__).parents[1] / "fixtures" / "exports"
EA_ACTUAL = FIXTURES / "EA_ActualCost_Small.csv"
EA_AMORTIZED = FIXTURES / "EA_AmortizedCost_Small.csv"
EA_NO_ROWS = FIXTURES / "EA_NoRows.csv"
FOCUS_1_0 = FIXTURES / "FOCUS-1.0_focus_sample_microsoft_only.csv"
FOCUS_1_2 = FIXTURES / "FOCUS-1.2_handmade.csv"
EA_UNITS = FIXTURES / "EA_ActualCost_handmade_units.csv"
INGESTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
EA_ACCOUNT_SCOPE = "/providers/Microsoft.Billing/billingAccounts/8611537"
HANDMADE_SCOPE = "/providers/Microsoft.Billing/billingAccounts/1234567"
HANDMADE_SUB = "3f2b6a1c-9d4e-4c1a-8b7f-2e5d6c7a8b90"
HANDMADE_VM = (
    f"/subscriptions/{HANDMADE_SUB}/resourcegroups/rg-prod/providers/microsoft.compute/"
    "virtualmachines/vm-01"
)


def imported(*paths: Path, cost_type: str | None = None) -> pl.DataFrame:
    result = import_cost_exports(list(paths), cost_type=cost_type, ingested_at=INGESTED)
    assert result.table.schema == COSTS
    return pl.from_arrow(result.table)


def total(frame: pl.DataFrame, column: str) -> float:
    return math.fsum(frame[column].to_list())


def test_ea_actual_sample_keeps_its_rows_and_total():
    costs = imported(EA_ACTUAL)
    # 11 rows; sum(Cost) = 8.5450077867419368 (Decimal sum of the file's Cost column).
    assert costs.height == 11
    assert total(costs, "billed_cost") == pytest.approx(8.5450077867419368, abs=1e-12)
    assert total(costs, "effective_cost") == pytest.approx(8.5450077867419368, abs=1e-12)
    assert set(costs["cost_type"]) == {"ActualCost"}  # from the file name
    assert set(costs["source"]) == {"export:ea-cost-details"}
    assert set(costs["cost_source"]) == {"export"}
    assert set(costs["scope"]) == {EA_ACCOUNT_SCOPE}
    assert set(costs["billing_currency"]) == {"USD"}
    # Four subscriptions, as in the file's SubscriptionId column.
    assert costs["subscription_id"].n_unique() == 4
    # sum(Quantity) = 54.07079406; the three 10K rows (0.0004 + 0.0047 + 0.0001 = 0.0052) are
    # divided by 10,000 (PricingUnits.csv), every other unit has block size 1:
    # 54.07079406 - 0.0052 + 0.00000052 = 54.06559458.
    assert total(costs, "consumed_quantity") == pytest.approx(54.06559458, abs=1e-12)
    first = costs.row(0, named=True)
    assert first["charge_period_start"] == datetime(2023, 9, 21, tzinfo=UTC)
    assert first["charge_period_end"] == datetime(2023, 9, 22, tzinfo=UTC)
    assert first["charge_category"] == "Purchase"
    assert first["resource_type"] == "microsoft.capacity/reservationorders/reservations"


def test_ea_security_meter_rows_survive_intact():
    costs = imported(EA_ACTUAL)
    security = costs.filter(
        pl.col("meter_category").is_in(["Advanced Threat Protection", "Advanced Data Security"])
    ).sort("meter_category")
    assert security.select("meter_category", "sku_meter", "billed_cost").rows() == [
        ("Advanced Data Security", "Standard Node", 0.4838709677419368),
        ("Advanced Threat Protection", "Standard Transactions", 0.000002),
    ]
    # The file spells this resource id in capitals; it is stored lower-cased.
    assert (
        security["resource_id"]
        .to_list()[1]
        .startswith("/subscriptions/64e355d7-997c-491d-b0c1-8414dccfcf42/")
    )


def test_ea_amortized_sample_keeps_its_rows_and_total():
    costs = imported(EA_AMORTIZED)
    # 28 rows; sum(Cost) = 16.29693213663664462748541900 (Decimal sum of the Cost column).
    assert costs.height == 28
    assert total(costs, "effective_cost") == pytest.approx(16.296932136636644627, abs=1e-12)
    assert set(costs["cost_type"]) == {"AmortizedCost"}


def test_header_only_export_gives_zero_rows():
    costs = imported(EA_NO_ROWS)
    assert costs.height == 0
    assert costs.columns == COSTS.names


def test_focus_1_0_sample_keeps_its_rows_totals_and_defender_descriptions():
    costs = imported(FOCUS_1_0)
    # 51 rows; sum(BilledCost) = sum(EffectiveCost) = 1.97651418586 (Decimal sums).
    assert costs.height == 51
    assert total(costs, "billed_cost") == pytest.approx(1.97651418586, abs=1e-12)
    assert total(costs, "effective_cost") == pytest.approx(1.97651418586, abs=1e-12)
    # No unit description in this sample: quantities are the file's ConsumedQuantity, whose
    # Decimal sum is 172.372646499613057.
    assert total(costs, "consumed_quantity") == pytest.approx(172.372646499613057, abs=1e-9)
    assert set(costs["source"]) == {"export:focus-1.0"}
    assert set(costs["cost_type"]) == {"FocusCost"}
    assert set(costs["scope"]) == {EA_ACCOUNT_SCOPE}
    # 10 rows whose ChargeDescription starts "Microsoft Defender for" (counted with csv).
    defender = costs.filter(pl.col("charge_description").str.starts_with("Microsoft Defender for"))
    assert defender.height == 10
    assert set(defender["charge_description"]) == {
        "Microsoft Defender for Storage - Standard Transactions",
        "Microsoft Defender for Storage - Free Transactions",
        "Microsoft Defender for Containers - Standard vCore vCore Pack",
    }
    assert costs["charge_period_start"].min() == datetime(2024, 9, 1, tzinfo=UTC)
    assert costs["charge_period_end"].max() <= datetime(2024, 10, 1, tzinfo=UTC)


def test_handmade_focus_1_2_file():
    costs = imported(FOCUS_1_2)
    assert set(costs["source"]) == {"export:focus-1.2"}
    # Billed 0.48 + 0.16128 + 4.2 + 0 = 4.84128; effective 0.48 + 0.16128 + 3.9 + 1.75 = 6.29128.
    assert total(costs, "billed_cost") == pytest.approx(4.84128, abs=1e-12)
    assert total(costs, "effective_cost") == pytest.approx(6.29128, abs=1e-12)
    # 35 hours in a `10 Hours` unit with x_PricingBlockSize 10 -> 3.5.
    assert costs["consumed_quantity"].to_list() == [24.0, 24.0, 3.5, 14.0]
    assert costs["x_unit_of_measure"].to_list() == ["1/Hour", "1/Hour", "10 Hours", "1 Hour"]
    plans = [
        billing.defender_plan(meter, description)
        for meter, description in costs.select("sku_meter", "charge_description").rows()
    ]
    assert plans == ["P2", "P1", None, None]
    assert costs["resource_id"][0] == HANDMADE_VM
    assert billing.is_subscription_pricing_id(costs["resource_id"][1])
    assert costs["meter_subcategory"][0] == "Microsoft Defender for Servers"
    assert costs["resource_type"].to_list()[2] == "microsoft.web/serverfarms"
    assert set(costs["scope"]) == {HANDMADE_SCOPE}
    assert set(costs["subscription_id"]) == {HANDMADE_SUB}
    assert costs["charge_period_start"].to_list()[2] == datetime(2025, 6, 2, tzinfo=UTC)


def test_handmade_ea_file_normalises_block_units_and_reports_unknown_ones():
    result = import_cost_exports([EA_UNITS], ingested_at=INGESTED)
    costs = pl.from_arrow(result.table)
    # 24 h at 1/Hour; 35 h at `10 Hours` -> 3.5; 250 h at `100 Hours` -> 2.5; 3 `7 Widgets`,
    # unknown to PricingUnits.csv, kept at block size 1.
    assert costs["consumed_quantity"].to_list() == [24.0, 3.5, 2.5, 3.0]
    assert costs["consumed_unit"].to_list() == ["Units/Hour", "Hours", "Hours", None]
    assert result.files[0].unknown_units == ("7 Widgets",)
    assert result.files[0].layout == "ea-cost-details"
    # Quoted numbers: 0.16128 + 4.2 + 5 - 0.3 = 9.06128.
    assert total(costs, "billed_cost") == pytest.approx(9.06128, abs=1e-12)
    assert costs["resource_id"].to_list()[0] == HANDMADE_VM
    assert costs["resource_id"].to_list()[3] is None  # "NULL" in the file
    assert costs["charge_category"].to_list() == ["Usage", "Usage", "Usage", "Purchase"]
    assert billing.defender_plan(costs["sku_meter"][0]) == "P1"
    assert costs["charge_description"][0] == "Microsoft Defender for Servers Plan 1"
    refund = costs.row(3, named=True)
    assert refund["charge_period_start"] == datetime(2025, 6, 30, tzinfo=UTC)
    assert refund["charge_period_end"] == datetime(2025, 7, 1, tzinfo=UTC)
    # EA's bare enrollment number and FOCUS's full id name one and the same scope.
    assert set(costs["scope"]) == {HANDMADE_SCOPE}
    assert set(costs["subscription_id"]) == {HANDMADE_SUB}


@pytest.mark.parametrize("sample", [EA_ACTUAL, FOCUS_1_0, FOCUS_1_2])
def test_gzipped_csv_imports_as_the_same_table(tmp_path, sample):
    zipped = tmp_path / f"{sample.name}.gz"
    with sample.open("rb") as source, gzip.open(zipped, "wb") as target:
        shutil.copyfileobj(source, target)
    assert imported(zipped).equals(imported(sample))


def test_typed_focus_parquet_imports_as_the_same_table(tmp_path):
    strings = pl.read_csv(FOCUS_1_0, infer_schema=False, null_values=["NULL"])
    typed = strings.with_columns(
        pl.col("BilledCost", "EffectiveCost", "ConsumedQuantity").cast(pl.Decimal(38, 18)),
        pl.col("ChargePeriodStart", "ChargePeriodEnd")
        .str.to_datetime("%Y-%m-%d %H:%M:%S", time_zone="UTC")
        .dt.cast_time_unit("ms"),
    )
    parquet = tmp_path / "focus.parquet"
    typed.write_parquet(parquet)
    assert imported(parquet).equals(imported(FOCUS_1_0))


def test_cost_details_parquet_imports_as_the_same_table(tmp_path):
    parquet = tmp_path / "EA_ActualCost.parquet"
    pl.read_csv(EA_ACTUAL, infer_schema=False).write_parquet(parquet)
    assert imported(parquet).equals(imported(EA_ACTUAL))


def test_unknown_layout_is_refused_naming_the_missing_columns(tmp_path):
    odd = tmp_path / "invoice.csv"
    odd.write_text("Date,Amount,Currency\n01/01/2025,1.00,USD\n", encoding="utf-8")
    with pytest.raises(UnknownLayoutError) as refused:
        imported(odd)
    message = str(refused.value)
    assert message.startswith(f"{odd}: not a cost export")
    assert message.endswith(
        "As FOCUS it is missing ChargePeriodStart, ChargePeriodEnd, BilledCost, EffectiveCost,"
        " BillingCurrency, ChargeCategory, ChargeDescription, ConsumedQuantity, ConsumedUnit,"
        " ResourceId, ServiceName, SubAccountId; as EA/MCA cost details it is missing"
        " CostInBillingCurrency|Cost, BillingCurrencyCode|BillingCurrency, SubscriptionId,"
        " ResourceId, MeterName, MeterCategory, Quantity, UnitOfMeasure"
    )


def test_cost_details_without_a_cost_type_are_refused_unless_told(tmp_path):
    unnamed = tmp_path / "part_0_0001.csv"
    shutil.copy(EA_AMORTIZED, unnamed)
    with pytest.raises(CostDataError, match="pass --cost-type"):
        imported(unnamed)
    costs = imported(unnamed, cost_type="AmortizedCost")
    assert costs.height == 28
    assert set(costs["cost_type"]) == {"AmortizedCost"}


def test_header_only_focus_file_gives_zero_rows(tmp_path):
    empty = tmp_path / "focus.csv"
    with FOCUS_1_2.open(encoding="utf-8") as source:
        header = next(csv.reader(source))
    with empty.open("w", encoding="utf-8", newline="") as target:
        csv.writer(target).writerow(header)
    assert imported(empty).height == 0


def test_folders_are_searched_and_other_files_skipped(tmp_path):
    run = tmp_path / "export" / "20230901-20230930" / "run-1"
    run.mkdir(parents=True)
    shutil.copy(EA_ACTUAL, run / "EA_ActualCost_part_1.csv")
    shutil.copy(FOCUS_1_2, tmp_path / "export" / "focus.csv")
    (run / "manifest.json").write_text("{}", encoding="utf-8")
    assert [p.name for p in export_files([tmp_path / "export"])] == [
        "EA_ActualCost_part_1.csv",
        "focus.csv",
    ]
    result = import_cost_exports([tmp_path / "export"], ingested_at=INGESTED)
    assert result.table.num_rows == 11 + 4
    assert [f.layout for f in result.files] == ["ea-cost-details", "focus-1.2"]


def test_paths_that_are_not_exports_are_refused(tmp_path):
    with pytest.raises(CostDataError, match="no such file or folder"):
        export_files([tmp_path / "missing.csv"])
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(CostDataError, match="not a cost export file"):
        export_files([tmp_path / "notes.txt"])
    with pytest.raises(CostDataError, match=r"no \.csv, \.csv\.gz, \.parquet file"):
        export_files([tmp_path])
    with pytest.raises(CostDataError, match="cost type must be one of"):
        import_cost_exports([EA_ACTUAL], cost_type="Actual")


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("contractual-2026/part_0.csv", None),  # "actual" inside a word says nothing
        ("factual/overactualized.csv", None),
        ("exports/ActualCost/2026-10/part_0.csv", "ActualCost"),
        ("exports/monthly-amortized/part_0.csv", "AmortizedCost"),
        ("EA_AmortizedCost_Small.csv", "AmortizedCost"),
        ("MCA-actual_2026.csv", "ActualCost"),
        ("actual/amortized.csv", None),  # both: ask
    ],
)
def test_the_cost_type_comes_from_whole_words_of_the_path(relative, expected):
    assert cost_type_from_path(Path("/data") / relative) == expected


def test_a_file_whose_path_only_contains_actual_inside_a_word_is_asked_about(tmp_path):
    folder = tmp_path / "contractual-2026"
    folder.mkdir()
    unnamed = folder / "part_0_0001.csv"
    shutil.copy(EA_AMORTIZED, unnamed)
    with pytest.raises(CostDataError) as asked:
        imported(unnamed)
    assert str(asked.value) == (
        f"{unnamed}: ea-cost-details files do not say whether they hold actual or amortized "
        "cost and no word of the path does either; pass --cost-type (ActualCost or "
        "AmortizedCost)"
    )
