"""What `mdecost sql` prints: an answer's values as data, never as markup or terminal control.

Values come from warehouse tables that hold names and ids from imported files, so any of them
may be hostile or merely odd. Hence:
- table and CSV text is DuckDB's own rendering of each value (`CAST(... AS VARCHAR)`), so every
  type it can return prints, intervals and nested lists, structs and maps included;
- control characters (escape sequences, bell, backspace, bidi overrides...) are shown as
  `\\xNN` / `\\uNNNN`, never sent to the terminal; tab and line breaks stay (CSV quotes them);
- the table is built from `rich.text.Text`, which is never read as markup;
- column names are DuckDB's unique ones (`a`, `a_1` for a query naming `a` twice), so a JSON
  object never loses a value to a repeated key;
- JSON is strict: NaN and infinities are `null` (JSON has no spelling for them), exact numbers
  stay numbers, dates and times are ISO 8601 text, intervals DuckDB's text.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final

import duckdb
from rich.table import Table
from rich.text import Text

# C0 and C1 controls except tab and line breaks, and the Unicode bidi controls that make text
# display in another order than it reads (CVE-2021-42574).
_CONTROL: Final = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
# Types JSON gets as DuckDB's text: Python's own objects for them lose or garble the value (an
# interval's months become 30 days; bytes are not JSON).
_AS_TEXT_IN_JSON: Final = ("INTERVAL", "BLOB", "BIT", "UUID", "TIME WITH TIME ZONE")


@dataclass(frozen=True)
class Answer:
    """An answer's unique column names and its rows."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


def visible(text: str) -> str:
    """`text` with every control character spelled out (`\\x1b`), so printing it cannot move
    the cursor, recolour, retitle or write the clipboard of the terminal it is printed on."""

    def spelled(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _CONTROL.sub(spelled, text)


def fetch(
    con: duckdb.DuckDBPyConnection, sql: str, parameters: Mapping[str, Any], *, as_text: bool
) -> Answer:
    """Run `sql` (one SELECT, already checked) and fetch its rows: every value as DuckDB's text
    (`as_text`), or as Python values with the types JSON cannot hold as text."""
    relation = con.sql(sql, params=dict(parameters))
    named = relation.project("*")  # DuckDB makes repeated names unique: a, a_1
    columns = named.columns
    if as_text:
        projected = named.project("CAST(COLUMNS(*) AS VARCHAR)")
    else:
        expressions = [
            f'CAST("{_quoted(name)}" AS VARCHAR)'
            if any(str(kind).upper().startswith(text) for text in _AS_TEXT_IN_JSON)
            else f'"{_quoted(name)}"'
            for name, kind in zip(columns, named.types, strict=True)
        ]
        projected = named.project(", ".join(expressions)) if expressions else named
    return Answer(list(columns), projected.fetchall())


def _quoted(name: str) -> str:
    return name.replace('"', '""')


def csv_text(answer: Answer) -> str:
    """The answer as CSV: a header, then one line per row; NULL is an empty field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(visible(name) for name in answer.columns)
    for row in answer.rows:
        writer.writerow("" if value is None else visible(str(value)) for value in row)
    return out.getvalue()


def rich_table(answer: Answer) -> Table:
    """The answer as a rich table whose cells are plain text (never markup); NULL is blank."""
    table = Table()
    for name in answer.columns:
        table.add_column(Text(visible(name)))
    for row in answer.rows:
        table.add_row(*(Text("" if value is None else visible(str(value))) for value in row))
    return table


def json_text(answer: Answer) -> str:
    """The answer as a JSON array of objects, one per row, keyed by column name; strict JSON."""
    records = [
        {name: _json_value(value) for name, value in zip(answer.columns, row, strict=True)}
        for row in answer.rows
    ]
    return json.dumps(records, allow_nan=False, ensure_ascii=True)


def _json_value(value: object) -> object:
    """A value JSON can hold: non-finite floats as null, exact numbers as numbers, times as ISO
    text, containers walked (a list of doubles may hold a NaN too)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [_json_value(item) for item in value]
    return str(value)
