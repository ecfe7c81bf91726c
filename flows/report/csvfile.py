"""`comparison.csv` (the month's machine rows of `licensing_comparison_monthly`) and
`licensing_options.csv` (its rows of `licensing_options_monthly`), as stored.

Values are written at the warehouse's own precision (no rounding), so a sum in a spreadsheet
matches a sum in SQL; dates are ISO 8601 and an empty field is a SQL NULL.

Text that a spreadsheet would evaluate is neutralised (OWASP, "CSV Injection"): a text field
starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, so Excel and
LibreOffice show it instead of running it (machine names and ids come from imported files).
Numbers are written as numbers, so a negative amount keeps its minus sign; a text field holding
a separator, a quote or a line break is quoted, so it cannot start another field or row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

# The first characters that make a spreadsheet read a cell as a formula (OWASP).
FORMULA_START: Final = r"^[=+\-@\t\r]"


def neutralised(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A text column with a `'` before every value a spreadsheet would evaluate; other columns
    as they are."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return column
    evaluated = pc.match_substring_regex(column, FORMULA_START)
    quoted = pc.binary_join_element_wise("'", column, "")
    return pc.if_else(evaluated, quoted, column)


def write_comparison_csv(machines: pa.Table, path: Path) -> None:
    """Write `machines` (or any table of contract columns) to `path` with a header row."""
    safe = pa.table(
        [neutralised(machines.column(name)) for name in machines.column_names],
        names=machines.column_names,
    )
    pa_csv.write_csv(safe, path, pa_csv.WriteOptions(include_header=True, quoting_style="needed"))
