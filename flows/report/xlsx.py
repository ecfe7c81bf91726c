"""`comparison.xlsx`: the month's summary, every machine and every finding, for finance to pivot.

Cells hold values (not only formulas) so any reader, openpyxl included, sees the numbers; the
totals rows are SUBTOTAL formulas (they follow the autofilter) whose cached value is the
warehouse's own sum, so the file shows the right total before any recalculation.

Text is written as text, never as a formula or a link: machine names and ids come from imported
files, and xlsxwriter's `write` turns a string starting with `=` into a formula and a URL-like
one (`external:\\\\host\\share`, which hands a Windows credential to whoever runs the host)
into a hyperlink. Every cell goes through `_cell`, which writes strings with `write_string` (the
workbook's `strings_to_*` options are off as well) and checks each status: a value longer than
a cell holds is cut, marked as cut, and the rest of its column is still written (`write_column`
stopped at the first error, silently).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import xlsxwriter
from xlsxwriter.format import Format
from xlsxwriter.utility import xl_col_to_name, xl_rowcol_to_cell
from xlsxwriter.worksheet import Worksheet

from flows.report.data import (
    FINDING_COLUMNS,
    MACHINE_COLUMNS,
    OPTION_COLUMNS,
    Assumptions,
    PlanAnswer,
    ReportData,
    ReportDataError,
)
from flows.report.formatting import xlsx_money_format
from flows.report.periods import Periods

SHEETS = ("summary", "machines", "findings", "options")
TOTAL_LABEL = "Total"
# Excel's limit on the characters of one cell; a longer value is cut and says so.
CELL_CHARACTERS = 32_767
CUT_MARK = "… [cut: longer than an Excel cell holds]"
# Nothing written to the workbook is interpreted: no formulas, links or numbers from text.
WORKBOOK_OPTIONS: Final = {
    "strings_to_formulas": False,
    "strings_to_urls": False,
    "strings_to_numbers": False,
}


class WorkbookWriteError(ReportDataError):
    """xlsxwriter refused a cell (a status other than 0): named, never left blank silently."""


_MONEY = frozenset(
    {
        "billed_cost",
        "hourly_cost",
        "seat_cost",
        "per_hour_savings",
        "amount",
        "mde_component_cost",
        "cost",
        "billed",
        "cost_vs_billed",
        "allocated_cost",
        "like_for_like_cost",
        "billed_p1",
        "billed_p2",
    }
)
_HOURS = frozenset({"billable_hours", "hours_in_month", "billed_hours"})
_SHARES = frozenset({"utilization", "break_even_utilization"})
_WIDTHS = {
    "month": 9,
    "subscription_id": 38,
    "resource_id": 60,
    "machine_name": 24,
    "detail": 60,
    "finding": 26,
    "seat_option": 18,
}


@dataclass(frozen=True)
class _Formats:
    title: Format
    header: Format
    money: Format
    money_bold: Format
    hours: Format
    hours_bold: Format
    share: Format
    month: Format
    integer: Format
    bold: Format
    wrap: Format

    def for_column(self, column: str, bold: bool = False) -> Format | None:
        if column in _MONEY:
            return self.money_bold if bold else self.money
        if column in _HOURS:
            return self.hours_bold if bold else self.hours
        if column in _SHARES:
            return self.share
        if column == "month":
            return self.month
        return self.bold if bold else None


def write_workbook(data: ReportData, path: Path, periods: Periods | None = None) -> None:
    """Write the four sheets of `data` to `path` (an .xlsx file; replaced if present): the
    summary, the machines, the findings and the licensing options (`licensing_options_monthly`
    of the month, every scope); with `periods`, the month's showback and the trend too."""
    with xlsxwriter.Workbook(str(path), WORKBOOK_OPTIONS) as book:
        money = xlsx_money_format(data.headline.currency)
        formats = _Formats(
            title=book.add_format({"bold": True, "font_size": 14}),
            header=book.add_format({"bold": True, "bg_color": "#E5E7EB", "bottom": 1}),
            money=book.add_format({"num_format": money}),
            money_bold=book.add_format({"num_format": money, "bold": True, "top": 1}),
            hours=book.add_format({"num_format": "#,##0.00"}),
            hours_bold=book.add_format({"num_format": "#,##0.00", "bold": True, "top": 1}),
            share=book.add_format({"num_format": "0.0%"}),
            month=book.add_format({"num_format": "yyyy-mm"}),
            integer=book.add_format({"num_format": "#,##0"}),
            bold=book.add_format({"bold": True, "top": 1}),
            wrap=book.add_format({"text_wrap": True, "valign": "top"}),
        )
        _summary_sheet(book.add_worksheet("summary"), data, formats)
        _table_sheet(
            book.add_worksheet("machines"),
            data.machines,
            MACHINE_COLUMNS,
            {
                "billable_hours": data.machine_totals.billable_hours,
                "billed_hours": data.machine_totals.billed_hours,
                "billed_cost": data.machine_totals.billed_cost,
                "hourly_cost": data.machine_totals.hourly_cost,
                "seat_cost": data.machine_totals.seat_cost,
                "per_hour_savings": data.machine_totals.per_hour_savings,
            },
            formats,
        )
        _table_sheet(
            book.add_worksheet("findings"),
            data.findings,
            FINDING_COLUMNS,
            {"amount": data.findings_total},
            formats,
        )
        _table_sheet(book.add_worksheet("options"), data.options, OPTION_COLUMNS, {}, formats)
        if periods is not None and periods.showback:
            showback = _showback_table(periods)
            _table_sheet(
                book.add_worksheet("showback"), showback, showback.column_names, {}, formats
            )
        if periods is not None and periods.trends:
            trends = _trend_table(periods)
            _table_sheet(book.add_worksheet("trends"), trends, trends.column_names, {}, formats)


def _showback_table(periods: Periods) -> pa.Table:
    """The month's showback rows (`showback_monthly`), each key's groups in the report's order."""
    rows = [
        {
            "group_key": showback.key,
            "group_kind": group.kind,
            "group_value": group.value,
            "machines": group.machines,
            "billable_hours": group.billable_hours,
            "billed_cost": group.billed,
            "allocated_cost": group.allocated,
            "like_for_like_cost": group.like_for_like,
        }
        for showback in periods.showback
        for group in showback.groups
    ]
    return pa.Table.from_pylist(rows)


def _trend_table(periods: Periods) -> pa.Table:
    """The trend's months, as the report's trend table states them."""
    return pa.Table.from_pylist(
        [
            {
                "month": month.month,
                "billed_p1": month.billed_p1,
                "billed_p2": month.billed_p2,
                "billed_cost": month.billed,
                "like_for_like_cost": month.like_for_like,
                "machines": month.machines,
                "utilization": month.utilization,
                "month_complete": month.complete,
            }
            for month in periods.trends
        ]
    )


def _cell(
    sheet: Worksheet, row: int, column: int, value: Any, cell_format: Format | None = None
) -> None:
    """Write one cell: text as text (`write_string`, cut to `CELL_CHARACTERS`), anything else by
    its type; raises WorkbookWriteError naming the sheet and cell for any other refusal."""
    if isinstance(value, str):
        if len(value) > CELL_CHARACTERS:
            value = value[: CELL_CHARACTERS - len(CUT_MARK)] + CUT_MARK
        status = sheet.write_string(row, column, value, cell_format)
    elif value is None:
        status = sheet.write_blank(row, column, None, cell_format)
    else:
        status = sheet.write(row, column, value, cell_format)
    if status != 0:
        raise WorkbookWriteError(
            f"comparison.xlsx: sheet {sheet.get_name()} cell {xl_rowcol_to_cell(row, column)}: "
            f"xlsxwriter refused the value (status {status})"
        )


def _table_sheet(
    sheet: Worksheet,
    table: pa.Table,
    columns: Sequence[str],
    totals: dict[str, float],
    formats: _Formats,
) -> None:
    """Header, one row per table row, then `totals` (column -> the warehouse's sum) in a last
    row; header frozen, autofilter over the rows (not the totals)."""
    rows = table.num_rows
    for index, column in enumerate(columns):
        _cell(sheet, 0, index, column, formats.header)
        sheet.set_column(index, index, _WIDTHS.get(column, 14))
        values = table.column(column)
        if pa.types.is_decimal(values.type):
            values = pc.cast(values, pa.float64())
        cell_format = formats.for_column(column)
        for offset, value in enumerate(values.to_pylist(), start=1):
            _cell(sheet, offset, index, value, cell_format)
    total_row = rows + 1
    _cell(sheet, total_row, 0, TOTAL_LABEL, formats.bold)
    for index, column in enumerate(columns):
        if column in totals:
            letter = xl_col_to_name(index)
            sheet.write_formula(
                total_row,
                index,
                f"=SUBTOTAL(109,{letter}2:{letter}{max(rows, 1) + 1})",
                formats.for_column(column, bold=True),
                totals[column],
            )
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, max(rows, 1), len(columns) - 1)


def _plan_measures(
    answer: PlanAnswer, assumptions: Assumptions, formats: _Formats
) -> list[tuple[str, Any, Format | None, str]]:
    """The summary's lines for one plan: billed against keeping the plan with MDE seats."""
    rule = assumptions.seat_rule
    lines: list[tuple[str, Any, Format | None, str]] = [
        (
            f"{answer.plan}: billed",
            answer.billed,
            formats.money,
            f"{answer.machines} machines",
        ),
        (
            f"{answer.plan}: keep the plan, MDE part by {assumptions.seat_option} seats ({rule})",
            answer.like_for_like,
            formats.money,
            f"{answer.seats} seats; {answer.eligibility_note}",
        ),
        (
            f"{answer.plan}: difference (keep + seats - billed)",
            answer.difference,
            formats.money,
            "negative: seats would have cost less",
        ),
        (
            f"{answer.plan}: seats alone, Defender for Servers off",
            answer.seats_only,
            formats.money,
            answer.seats_only_note,
        ),
    ]
    if answer.p1_instead is not None:
        lines.append(
            (
                "P2: the same hours on Plan 1",
                answer.p1_instead,
                formats.money,
                answer.p1_note or "",
            )
        )
    return lines


def _summary_sheet(sheet: Worksheet, data: ReportData, formats: _Formats) -> None:
    """Headline measures first, then the subscriptions of `fleet_comparison_monthly`."""
    headline = data.headline

    measures: list[tuple[str, Any, Format | None, str]] = [
        (
            "Defender for Servers billed (Cost Management)",
            headline.billed_cost,
            formats.money,
            "every Defender for Servers charge dated in the month",
        ),
        (
            "  of which allocated from subscription-level charges",
            headline.allocated_cost,
            formats.money,
            "allocated to machines by billable hours that day",
        ),
        (
            "  of which not attributed to a machine",
            headline.unattributed_cost,
            formats.money,
            "no billable machine that day to carry it",
        ),
        (
            "Per-hour price of observed billable hours",
            headline.hourly_cost,
            formats.money,
            "billable hours x the plan's hourly rate in force",
        ),
        *(
            measure
            for answer in data.plan_answers
            for measure in _plan_measures(answer, data.assumptions, formats)
        ),
        ("Machines (distinct)", headline.machines_distinct, formats.integer, ""),
        (
            "Peak concurrent billable machines",
            headline.peak_concurrent_machines,
            formats.integer,
            "most machines billable in the same hour: a lower bound, not a licence count",
        ),
        (
            "Month complete",
            "yes" if data.month_complete else "no: month to date",
            None,
            "headlines use complete months only",
        ),
        ("Billable hours observed", headline.billable_hours, formats.hours, ""),
        ("Hours billed (Cost Management)", headline.billed_hours, formats.hours, ""),
        ("Findings", headline.findings_count, formats.integer, "see the findings sheet"),
        ("Findings amount", data.findings_total, formats.money, "findings without an amount: 0"),
        ("Currency", headline.currency, None, ""),
    ]
    _cell(
        sheet,
        0,
        0,
        f"Defender for Servers vs per-seat licensing, {data.month:%B %Y}",
        formats.title,
    )
    for index, header in enumerate(("Measure", "Value", "Note")):
        _cell(sheet, 1, index, header, formats.header)
    for offset, (label, value, number_format, note) in enumerate(measures):
        _cell(sheet, 2 + offset, 0, label)
        _cell(sheet, 2 + offset, 1, value, number_format)
        _cell(sheet, 2 + offset, 2, note)
    sheet.set_column(0, 0, 52)
    sheet.set_column(1, 1, 38)
    sheet.set_column(2, 2, 46)
    sheet.set_column(3, 8, 18)
    sheet.freeze_panes(2, 0)

    top = 2 + len(measures) + 1
    _cell(sheet, top, 0, "By subscription (fleet_comparison_monthly)", formats.title)
    columns = (
        "subscription_id",
        "machines_distinct",
        "peak_concurrent_machines",
        "billable_hours",
        "billed_cost",
        "hourly_cost",
    )
    # The peak is no licence count: its header says so (the licensing answers, per plan and
    # seat rule, are on the options sheet).
    headers = {"peak_concurrent_machines": "peak_concurrent_machines (lower bound, not licensable)"}
    header_row = top + 1
    for index, column in enumerate(columns):
        _cell(sheet, header_row, index, headers.get(column, column), formats.header)
    for offset, row in enumerate(data.subscriptions):
        for index, column in enumerate(columns):
            value = getattr(row, column)
            integer = column in {"machines_distinct", "peak_concurrent_machines"}
            _cell(
                sheet,
                header_row + 1 + offset,
                index,
                value,
                formats.integer if integer else formats.for_column(column),
            )
    last_row = header_row + max(len(data.subscriptions), 1)
    sheet.autofilter(header_row, 0, last_row, len(columns) - 1)
    estate_row = last_row + 1
    _cell(sheet, estate_row, 0, "Estate (all subscriptions)", formats.bold)
    for index, column in enumerate(columns[1:], start=1):
        integer = column in {"machines_distinct", "peak_concurrent_machines"}
        _cell(
            sheet,
            estate_row,
            index,
            getattr(data.estate, column),
            formats.bold if integer else formats.for_column(column, bold=True),
        )
