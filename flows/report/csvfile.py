"""`comparison.csv` (the month's machine rows of `licensing_comparison_monthly`) and
`licensing_options.csv` (its rows of `licensing_options_monthly`), as stored.

Values are written at the warehouse's own precision (no rounding), so a sum in a spreadsheet
matches a sum in SQL; dates are ISO 8601 and an empty field is a SQL NULL.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv


def write_comparison_csv(machines: pa.Table, path: Path) -> None:
    """Write `machines` (or any table of contract columns) to `path` with a header row."""
    pa_csv.write_csv(
        machines, path, pa_csv.WriteOptions(include_header=True, quoting_style="needed")
    )
