"""Bad export files are refused naming the file, row and column, and the lake does not change;
refunds are kept; importing the same file again counts nothing twice.

Every bad file is the hand-written EA file `EA_ActualCost_handmade_units.csv` (4 rows, 57
columns, all USD, billing account 1234567, June 2025) with one thing broken, so each expected
message is read off the change made. Rows are counted from 1, the first row after the header.
"""

from __future__ import annotations

import csv
import gzip
import logging
import math
import shutil
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from flows.exports import import_costs_to_lake
from flows.lake import scan_dataset
from transforms.costs import CostDataError, UnknownLayoutError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "exports"
HANDMADE = FIXTURES / "EA_ActualCost_handmade_units.csv"
EA_ACTUAL = FIXTURES / "EA_ActualCost_Small.csv"
OTHER_SUBSCRIPTION = "9d0c4b1e-6a3f-4e2d-8c7b-1a2b3c4d5e6f"


def read_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


def write_rows(path: Path, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, quoting=csv.QUOTE_ALL).writerows(rows)
    return path


def handmade_with(tmp_path: Path, name: str, change) -> Path:
    """The handmade file with `change(header, rows)` applied, written as `name`."""
    header, *rows = read_rows(HANDMADE)
    change(header, rows)
    return write_rows(tmp_path / "in" / name, [header, *rows])


def setter(row: int, column: str, value: str):
    def change(header, rows):
        rows[row - 1][header.index(column)] = value

    return change


def lake_bytes(lake: Path) -> dict[Path, bytes]:
    return {path.relative_to(lake): path.read_bytes() for path in lake.rglob("*") if path.is_file()}


@pytest.fixture
def lake(tmp_path) -> Path:
    """A lake already holding an import (the FinOps toolkit's EA sample, September 2023)."""
    lake = tmp_path / "lake"
    import_costs_to_lake([EA_ACTUAL], lake)
    return lake


# --- refused, naming file, row and column; the lake unchanged ---------------------------------
def drop_cost_columns(header, rows):
    index = header.index("CostInBillingCurrency")
    for row in (header, *rows):
        del row[index]


def long_second_row(header, rows):
    rows[1].append("an extra field")


def short_third_row(header, rows):
    del rows[2][10:]


REFUSALS = [
    (
        "EA_ActualCost_decimal_comma.csv",
        setter(3, "CostInBillingCurrency", "5,00"),
        "row 3, column CostInBillingCurrency: '5,00' is not a number",
    ),
    (
        "EA_ActualCost_text_quantity.csv",
        setter(1, "Quantity", "24 hours"),
        "row 1, column Quantity: '24 hours' is not a number",
    ),
    (
        "EA_ActualCost_bad_date.csv",
        setter(2, "Date", "2025-13-45"),
        "row 2, column Date: '2025-13-45' is not a date (cost details use MM/DD/YYYY or "
        "YYYY-MM-DD)",
    ),
    (
        "EA_ActualCost_no_cost.csv",
        setter(4, "CostInBillingCurrency", ""),
        "row 4, column CostInBillingCurrency is empty; every row needs a value there",
    ),
    (
        "EA_ActualCost_no_currency.csv",
        setter(2, "BillingCurrencyCode", "  "),
        "row 2, column BillingCurrencyCode is empty; every row needs a value there",
    ),
    (
        "EA_ActualCost_long_row.csv",
        long_second_row,
        "row 2 has 58 fields, the header has 57: a value with an unquoted comma, or a line cut "
        "short - check the file, or export it again",
    ),
    (
        "EA_ActualCost_short_row.csv",
        short_third_row,
        "row 3 has 10 fields, the header has 57: a value with an unquoted comma, or a line cut "
        "short - check the file, or export it again",
    ),
    (
        "EA_ActualCost_currency_name.csv",
        setter(1, "BillingCurrencyCode", "US Dollar"),
        "row 1, column BillingCurrencyCode: 'US Dollar' is not a currency code (three letters, "
        "such as USD)",
    ),
    (
        # Decision: one sub-account billed in two currencies is refused (see
        # transforms.costs.refuse_mixed_currency_sub_accounts); rows 1, 3, 4 stay USD.
        "EA_ActualCost_two_currencies.csv",
        setter(2, "BillingCurrencyCode", "EUR"),
        "sub-account /subscriptions/3f2b6a1c-9d4e-4c1a-8b7f-2e5d6c7a8b90 is billed in USD "
        "(3 row(s)) and also in EUR (1 row(s), first at row 2); a subscription is invoiced in "
        "one currency, so this looks like merged or corrupt exports - import each billing "
        "account's own export",
    ),
]


@pytest.mark.parametrize(("name", "change", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_a_bad_value_is_refused_naming_file_row_and_column_and_the_lake_keeps_what_it_had(
    lake, tmp_path, name, change, message
):
    before = lake_bytes(lake)
    bad = handmade_with(tmp_path, name, change)
    with pytest.raises(CostDataError) as refused:
        import_costs_to_lake([bad], lake)
    assert str(refused.value) == f"{bad}: {message}"
    assert lake_bytes(lake) == before


def test_a_missing_column_is_refused_naming_it(lake, tmp_path):
    before = lake_bytes(lake)
    bad = handmade_with(tmp_path, "EA_ActualCost_no_cost_column.csv", drop_cost_columns)
    with pytest.raises(UnknownLayoutError) as refused:
        import_costs_to_lake([bad], lake)
    assert str(refused.value).startswith(f"{bad}: not a cost export mdecost can read.")
    assert str(refused.value).endswith(
        "as EA/MCA cost details it is missing CostInBillingCurrency|Cost"
    )
    assert lake_bytes(lake) == before


def test_a_focus_cost_that_is_not_a_number_is_named(lake, tmp_path):
    header, *rows = read_rows(FIXTURES / "FOCUS-1.2_handmade.csv")
    rows[3][header.index("EffectiveCost")] = "n/a"
    bad = write_rows(tmp_path / "focus.csv", [header, *rows])
    before = lake_bytes(lake)
    with pytest.raises(CostDataError, match=r"row 4, column EffectiveCost: 'n/a' is not a number$"):
        import_costs_to_lake([bad], lake)
    assert lake_bytes(lake) == before


def gzip_of(path: Path) -> bytes:
    return gzip.compress(path.read_bytes())


DAMAGED = [
    ("EA_ActualCost.csv", b"", "empty file, not even a header row"),
    ("EA_ActualCost.csv.gz", gzip.compress(b""), "empty file, not even a header row"),
    (
        "EA_ActualCost_cut.csv.gz",
        gzip_of(HANDMADE)[: len(gzip_of(HANDMADE)) // 2],
        "a damaged or incomplete gzip file (unexpected end of file); download or export it again",
    ),
    (
        "EA_ActualCost_plain.csv.gz",
        HANDMADE.read_bytes(),
        "a damaged or incomplete gzip file (Not a gzipped file (b'\\xef\\xbb')); download or "
        "export it again",
    ),
    (
        "EA_ActualCost_bad_crc.csv.gz",
        gzip_of(HANDMADE)[:-8] + b"\0\0\0\0" + gzip_of(HANDMADE)[-4:],
        "a damaged or incomplete gzip file (corrupt gzip stream does not have a matching "
        "checksum); download or export it again",
    ),
    (
        "EA_ActualCost.parquet",
        b"PAR1",
        "not a readable Parquet file (parquet: File out of specification: A Parquet file must "
        "contain a header and footer with at least 12 bytes); download or export it again",
    ),
]


@pytest.mark.parametrize(("name", "content", "message"), DAMAGED, ids=[d[0] for d in DAMAGED])
def test_an_empty_or_damaged_file_is_refused_naming_it(lake, tmp_path, name, content, message):
    before = lake_bytes(lake)
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(CostDataError) as refused:
        import_costs_to_lake([bad], lake)
    assert str(refused.value) == f"{bad}: {message}"
    assert lake_bytes(lake) == before


def test_one_bad_file_among_good_ones_stops_the_whole_import_before_any_write(lake, tmp_path):
    before = lake_bytes(lake)
    folder = tmp_path / "export"
    folder.mkdir()
    shutil.copy(FIXTURES / "FOCUS-1.2_handmade.csv", folder / "a_focus.csv")
    handmade_with(folder, "z_EA_ActualCost.csv", setter(1, "Date", "yesterday"))
    with pytest.raises(
        CostDataError, match=r"z_EA_ActualCost\.csv: row 1, column Date: 'yesterday'"
    ):
        import_costs_to_lake([folder], lake)
    assert lake_bytes(lake) == before


# --- kept: refunds, several currencies across sub-accounts, a header only ----------------------
def test_refunds_negative_quantities_and_costs_are_kept_and_counted(tmp_path):
    def add_defender_refund(header, rows):
        refund = list(rows[0])
        refund[header.index("Date")] = "06/02/2025"
        refund[header.index("Quantity")] = "-24"
        refund[header.index("CostInBillingCurrency")] = "-0.16128"
        refund[header.index("ChargeType")] = "Refund"
        rows.append(refund)

    export = handmade_with(tmp_path, "EA_ActualCost_refund.csv", add_defender_refund)
    lake = tmp_path / "lake"
    result = import_costs_to_lake([export], lake)
    # Row 4 (cost -0.3) and the new row 5 (quantity -24, cost -0.16128) are negative.
    assert result.files[0].negative_rows == 2
    costs = scan_dataset(lake, "costs").collect()
    assert costs.height == 5
    # 0.16128 + 4.2 + 5 - 0.3 - 0.16128 = 8.9
    assert math.fsum(costs["billed_cost"]) == pytest.approx(8.9, abs=1e-12)
    defender = costs.filter(pl.col("sku_meter") == "Standard P1 Node").sort("consumed_quantity")
    assert defender["consumed_quantity"].to_list() == [-24.0, 24.0]
    assert defender["charge_category"].to_list() == ["Purchase", "Usage"]  # Refund -> Purchase


def test_sub_accounts_billed_in_different_currencies_are_kept_and_flagged(tmp_path, caplog):
    def second_subscription_in_euros(header, rows):
        for row in rows[1:3]:
            row[header.index("SubscriptionId")] = OTHER_SUBSCRIPTION
            row[header.index("BillingCurrencyCode")] = "EUR"

    export = handmade_with(tmp_path, "EA_ActualCost_two_profiles.csv", second_subscription_in_euros)
    with caplog.at_level(logging.WARNING, logger="flows.exports"):
        result = import_costs_to_lake([export], tmp_path / "lake")
    assert result.files[0].currencies == ("EUR", "USD")
    assert f"{export}: sub-accounts billed in different currencies (EUR, USD)" in caplog.text
    costs = scan_dataset(tmp_path / "lake", "costs").collect()
    totals = dict(costs.group_by("billing_currency").agg(pl.col("billed_cost").sum()).rows())
    # USD: 0.16128 - 0.3; EUR: 4.2 + 5.
    assert totals == pytest.approx({"USD": -0.13872, "EUR": 9.2})


def test_a_header_only_file_imports_nothing_and_changes_nothing(lake):
    before = lake_bytes(lake)
    result = import_costs_to_lake([FIXTURES / "EA_NoRows.csv"], lake)
    assert (result.rows, result.written) == (0, ())
    assert lake_bytes(lake) == before


# --- the same file again: replaced, never added ---------------------------------------------
# The four subscriptions of the toolkit's EA sample (billing account 8611537, September 2023).
SUB_A = "1caaa5a3-2b66-438e-8ab4-bce37d518c5d"  # 5 rows: 3.25 + 2.64 + 0 + 0.21268368 + 0
SUB_B = "64e355d7-997c-491d-b0c1-8414dccfcf42"  # 3 rows: 0.000002 + 1.9584 + 0.4838709677419368
SUB_C = "9ec51cfd-5ca7-4d76-8101-dd0a4abc5674"  # 1 row: 0
SUB_D = "ed570627-0265-4620-bb42-bae06bcfa914"  # 2 rows: 0.00004 + 0.000011139


def test_partitions_are_one_per_month_owner_and_cost_type(lake):
    files = sorted(path.relative_to(lake).as_posix() for path in lake.rglob("*.parquet"))
    assert files == [
        f"raw/costs/source=export/month=2023-09/sub_account={sub}/cost_type=ActualCost/data.parquet"
        for sub in (SUB_A, SUB_B, SUB_C, SUB_D)
    ]


def test_importing_the_same_file_again_replaces_its_rows(lake, tmp_path):
    def held():
        costs = scan_dataset(lake, "costs").collect()
        return costs.height, math.fsum(costs["billed_cost"])

    # 11 rows; sum(Cost) = 8.5450077867419368 (Decimal sum of the file's Cost column).
    assert held() == (11, pytest.approx(8.5450077867419368, abs=1e-12))
    files = sorted(lake.rglob("*.parquet"))
    import_costs_to_lake([EA_ACTUAL], lake)
    assert sorted(lake.rglob("*.parquet")) == files
    assert held() == (11, pytest.approx(8.5450077867419368, abs=1e-12))
    # A copy under another name in the same import is read once.
    copy = tmp_path / "again" / "EA_ActualCost_copy.csv"
    copy.parent.mkdir()
    shutil.copy(EA_ACTUAL, copy)
    result = import_costs_to_lake([EA_ACTUAL, copy], lake)
    assert [f.duplicate_of for f in result.files] == [None, EA_ACTUAL]
    assert held() == (11, pytest.approx(8.5450077867419368, abs=1e-12))


def test_two_runs_of_one_export_in_one_import_are_refused(lake, tmp_path):
    first = tmp_path / "export" / "run-1" / "EA_ActualCost.csv"
    first.parent.mkdir(parents=True)
    shutil.copy(EA_ACTUAL, first)
    header, *rows = read_rows(EA_ACTUAL)
    rows[0][header.index("Cost")] = "3.5"  # restated
    second = write_rows(tmp_path / "export" / "run-2" / "EA_ActualCost.csv", [header, *rows])
    before = lake_bytes(lake)
    with pytest.raises(CostDataError) as refused:
        import_costs_to_lake([tmp_path / "export"], lake)
    assert str(refused.value) == (
        f"{first} and {second} both hold ActualCost rows of {SUB_A} for 2023-09, from "
        "different folders (two runs of an export?); import only the latest run's folder"
    )
    assert lake_bytes(lake) == before
    # The latest run alone replaces the month: 8.5450077867419368 - 3.25 + 3.5.
    import_costs_to_lake([second.parent], lake)
    total = math.fsum(scan_dataset(lake, "costs").collect()["billed_cost"])
    assert total == pytest.approx(8.7950077867419368, abs=1e-12)


def test_parts_of_one_run_spelling_the_account_differently_land_in_one_partition(tmp_path):
    header, *rows = read_rows(HANDMADE)
    account = header.index("BillingAccountId")
    for row in rows[:2]:
        row[account] = "/PROVIDERS/MICROSOFT.BILLING/BILLINGACCOUNTS/1234567"
    run = tmp_path / "run-1"
    write_rows(run / "EA_ActualCost_part_1.csv", [header, *rows[:2]])
    write_rows(run / "EA_ActualCost_part_2.csv", [header, *rows[2:]])
    result = import_costs_to_lake([run], tmp_path / "lake")
    assert len(result.written) == 1
    costs = scan_dataset(tmp_path / "lake", "costs").collect()
    # All four rows: 0.16128 + 4.2 + 5 - 0.3 = 9.06128.
    assert costs.height == 4
    assert math.fsum(costs["billed_cost"]) == pytest.approx(9.06128, abs=1e-12)


# --- implausible values, ids that are no ids, odd headers (issue 13) ------------------------
PLAUSIBILITY = [
    ("EA_ActualCost_nan.csv", 2, "CostInBillingCurrency", "NaN"),
    ("EA_ActualCost_inf.csv", 3, "CostInBillingCurrency", "inf"),
    # 1e309 is past float64's largest (1.8e308): float() reads it as infinity.
    ("EA_ActualCost_overflow.csv", 1, "CostInBillingCurrency", "1e309"),
    ("EA_ActualCost_absurd.csv", 4, "CostInBillingCurrency", "1e27"),
    ("EA_ActualCost_absurd_refund.csv", 1, "Quantity", "-1000000000000"),  # 1/Hour: as is
]


@pytest.mark.parametrize(
    ("name", "row", "column", "value"), PLAUSIBILITY, ids=[p[0] for p in PLAUSIBILITY]
)
def test_a_non_finite_or_absurd_amount_is_refused_naming_file_row_and_column(
    lake, tmp_path, name, row, column, value
):
    before = lake_bytes(lake)
    bad = handmade_with(tmp_path, name, setter(row, column, value))
    with pytest.raises(CostDataError) as refused:
        import_costs_to_lake([bad], lake)
    assert str(refused.value) == (
        f"{bad}: row {row}, column {column}: {value!r} is not a plausible amount (NaN, "
        "infinite, or 1e+12 or more in magnitude)"
    )
    assert lake_bytes(lake) == before


def test_a_cost_just_below_the_bound_is_kept(lake, tmp_path):
    # 999,999,999,999.99 is absurd for a Defender bill but not impossible for one row of a
    # whole enrollment in a currency of small units: the bound is 1e12, not "looks large".
    fine = handmade_with(
        tmp_path, "EA_ActualCost_large.csv", setter(2, "CostInBillingCurrency", "999999999999.99")
    )
    import_costs_to_lake([fine], lake)
    costs = scan_dataset(lake, "costs").collect()
    assert costs["billed_cost"].max() == 999999999999.99


@pytest.mark.parametrize(
    ("value", "year"),
    [("12/31/2009", 2009), ("01/01/2099", 2099), ("2009-06-01", 2009)],
)
def test_an_implausible_date_is_refused(lake, tmp_path, value, year):
    bad = handmade_with(tmp_path, "EA_ActualCost_dates.csv", setter(3, "Date", value))
    with pytest.raises(CostDataError) as refused:
        import_costs_to_lake([bad], lake, ingested_at=datetime(2026, 12, 4, tzinfo=UTC))
    # Plausible: 2010 to next year (2027, from the import's own date).
    assert str(refused.value) == (
        f"{bad}: row 3, column Date: {value!r} is not a plausible charge date (2010 to 2027)"
    )


def test_next_years_date_is_still_plausible(lake, tmp_path):
    fine = handmade_with(tmp_path, "EA_ActualCost_next_year.csv", setter(3, "Date", "01/15/2027"))
    import_costs_to_lake([fine], lake, ingested_at=datetime(2026, 12, 4, tzinfo=UTC))


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("ResourceId", '=HYPERLINK("http://evil.example","x")'),
        ("ResourceId", "@SUM(A1)"),
        ("ResourceId", "/subscriptions/x/vm\x1b[2J"),
        ("SubscriptionId", "+cmd|' /C calc'!A0"),
        ("SubscriptionId", "-1+1"),
    ],
)
def test_an_id_that_would_run_as_a_formula_is_refused(lake, tmp_path, column, value):
    before = lake_bytes(lake)
    bad = handmade_with(tmp_path, "EA_ActualCost_formula.csv", setter(2, column, value))
    with pytest.raises(CostDataError) as refused:
        import_costs_to_lake([bad], lake)
    assert str(refused.value) == (
        f"{bad}: row 2, column {column}: {value!r} is not an id: it starts like a spreadsheet "
        "formula (=, +, -, @, tab, carriage return) or holds a control character"
    )
    assert lake_bytes(lake) == before


def test_a_resource_id_that_is_not_an_arm_id_is_kept_and_flagged(lake, tmp_path, caplog):
    odd = "arn:aws:ec2:us-east-1:123456789012:instance/i-0abc"
    flagged = handmade_with(tmp_path, "EA_ActualCost_odd_id.csv", setter(2, "ResourceId", odd))
    with caplog.at_level(logging.WARNING):
        result = import_costs_to_lake([flagged], lake)
    assert result.files[0].non_arm_ids == (odd,)
    assert "1 resource id(s) that are not Azure resource ids" in caplog.text


def test_columns_differing_only_in_case_are_refused(lake, tmp_path):
    def twin_cost_column(header, rows):
        header.append("costinbillingcurrency")
        for row in rows:
            row.append("1000")

    bad = handmade_with(tmp_path, "EA_ActualCost_twins.csv", twin_cost_column)
    with pytest.raises(CostDataError) as refused:
        import_costs_to_lake([bad], lake)
    assert str(refused.value) == (
        f"{bad}: columns CostInBillingCurrency and costinbillingcurrency differ only in case; "
        "mdecost reads columns without case, so it cannot tell which one to use - export the "
        "file again"
    )


def test_a_field_over_128_kib_is_refused_in_one_line(lake, tmp_path):
    huge = "x" * (200 * 1024)  # Python's csv module stops at 131,072 characters a field

    def huge_field_and_a_short_row(header, rows):
        rows[0][header.index("AdditionalInfo")] = huge
        del rows[2][10:]  # a faulty file: the rows are then read one by one to name the row

    bad = handmade_with(tmp_path, "EA_ActualCost_huge.csv", huge_field_and_a_short_row)
    huge_header = handmade_with(
        tmp_path, "EA_ActualCost_huge_header.csv", lambda header, rows: header.append(huge)
    )
    for path in (bad, huge_header):
        with pytest.raises(CostDataError) as refused:
            import_costs_to_lake([path], lake)
        assert str(refused.value) == (
            f"{path}: not a readable text file (field larger than field limit (131072)); "
            "download or export it again"
        )
