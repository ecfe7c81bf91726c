"""The monthly finance report: `render_report(...)` writes report.html, comparison.csv and
comparison.xlsx for one month from the warehouse.

`data` reads and shapes the numbers (queries only), `charts` draws them as SVG, `html`, `xlsx`
and `csvfile` lay them out, `render` opens the warehouse and writes the files.
"""

from flows.report.data import ReportDataError
from flows.report.render import FORMATS, ReportPaths, parse_formats, render_report

__all__ = ["FORMATS", "ReportDataError", "ReportPaths", "parse_formats", "render_report"]
