"""The simulated Log Analytics workspace: the estate's `AzureActivity` rows behind the Logs query
API (`POST /v1/workspaces/{id}/query`), in the API's wire format.

What it holds: every Activity Log event of the estate up to the clock, as a diagnostic setting
writes it (`OperationNameValue` upper-cased, `ActivityStatusValue` spelt Start / Accept /
Success / Failure, `_ResourceId` lower-cased, `TimeGenerated` the event's timestamp), so the
rows older than the Activity Log's 90 days are there when the API's are gone.

What it answers: the KQL mdecost sends and no more (`run_query`): the table, `where` clauses of
one comparison each (`>=`, `>`, `<`, `<=`, `==`, `=~`, `in`, `in~`), `project`, and
`summarize Name = min(Column)`; the request's `timespan` (`start/end`) bounds `TimeGenerated`.
Anything else is the API's 400 `BadArgumentError`, so a query mdecost changes without teaching
the simulator fails loudly rather than being answered wrongly. An answer longer than
`max_rows` is cut there and flagged `PartialError`, as the service does past its limits.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final

import polars as pl

from flows.simulator import wire
from flows.simulator.queries import BadRequest

WORKSPACE_ID: Final = "0b5e55ed-0000-4000-8000-00000000da7a"
TABLE: Final = "AzureActivity"
# The service's limit on rows per answer (Learn: azure-monitor/service-limits).
MAX_ROWS: Final = 500_000
_DIAGNOSTIC_STATUS: Final = {
    "Started": "Start",
    "Accepted": "Accept",
    "Succeeded": "Success",
    "Failed": "Failure",
}
_CLAUSE: Final = re.compile(
    r"^(?P<column>\w+)\s*(?P<op>>=|<=|==|=~|in~|in|>|<)\s*(?P<value>.+)$", re.DOTALL
)
_SUMMARIZE: Final = re.compile(r"^(?P<name>\w+)\s*=\s*min\(\s*(?P<column>\w+)\s*\)$")
_DATETIME: Final = re.compile(r"^datetime\((?P<text>[^)]+)\)$")
_STRING: Final = re.compile(r'"([^"]*)"')


def _bad(message: str, code: str = "SyntaxError") -> BadRequest:
    return BadRequest(f"{code}: {message}", "BadArgumentError")


def activity_rows(events: pl.DataFrame) -> pl.DataFrame:
    """The estate's Activity Log events (`Estate.activity_events()`) as `AzureActivity` rows."""
    return events.select(
        TimeGenerated=pl.col("event_at"),
        EventDataId=pl.col("event_data_id"),
        CorrelationId=pl.col("correlation_id"),
        OperationNameValue=pl.col("operation_name").str.to_uppercase(),
        ActivityStatusValue=pl.col("status").replace_strict(_DIAGNOSTIC_STATUS),
        CategoryValue=pl.lit("Administrative"),
        Level=pl.when(pl.col("status") == "Failed")
        .then(pl.lit("Error"))
        .otherwise(pl.lit("Informational")),
        ResourceProviderValue=pl.col("operation_name")
        .str.extract(r"^([^/]+)/", 1)
        .str.to_uppercase(),
        SubscriptionId=pl.col("subscription_id"),
        ResourceGroup=pl.col("resource_group").str.to_uppercase(),
        _ResourceId=pl.col("resource_id"),
        Type=pl.lit(TABLE),
    )


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _bad(f"{text!r} is not a datetime") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _literal(text: str) -> Any:
    text = text.strip()
    if match := _DATETIME.match(text):
        return _instant(match.group("text"))
    if text.startswith('"') and text.endswith('"') and text.count('"') == 2:
        return text[1:-1]
    raise _bad(f'the simulator reads datetime(...) and "string" literals, not {text!r}')


def _where(rows: pl.DataFrame, clause: str) -> pl.DataFrame:
    match = _CLAUSE.match(clause.strip())
    if match is None:
        raise _bad(f"the simulator reads one comparison per where clause, not {clause!r}")
    column, op, value = match.group("column", "op", "value")
    if column not in rows.columns:
        raise _bad(f"Failed to resolve column expression named '{column}'", "SemanticError")
    col = pl.col(column)
    if op in ("in", "in~"):
        inner = value.strip()
        if not (inner.startswith("(") and inner.endswith(")")):
            raise _bad(f"{op} takes a parenthesised list, not {value!r}")
        items = _STRING.findall(inner)
        if op == "in~":
            return rows.filter(col.str.to_lowercase().is_in([item.lower() for item in items]))
        return rows.filter(col.is_in(items))
    literal = _literal(value)
    if op == "=~":
        return rows.filter(col.str.to_lowercase() == str(literal).lower())
    comparisons = {
        ">=": col >= literal,
        ">": col > literal,
        "<=": col <= literal,
        "<": col < literal,
        "==": col == literal,
    }
    return rows.filter(comparisons[op])


def _timespan(text: str | None) -> tuple[datetime, datetime] | None:
    if not text:
        return None
    start, slash, end = text.partition("/")
    if not slash or end.upper().startswith("P"):
        raise _bad(f"the simulator reads a timespan as start/end, not {text!r}")
    return _instant(start), _instant(end)


def run_query(rows: pl.DataFrame, body: dict[str, Any]) -> pl.DataFrame:
    """The result of the request `body` (`query`, `timespan`) over the workspace's `rows`."""
    text = body.get("query")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("The request had some invalid properties: query", "BadArgumentError")
    stages = [stage.strip() for stage in text.split("|")]
    if stages[0] != TABLE:
        raise _bad(f"Failed to resolve table expression named '{stages[0]}'", "SemanticError")
    span = _timespan(body.get("timespan"))
    if span is not None:
        rows = rows.filter(pl.col("TimeGenerated").is_between(*span, closed="both"))
    for stage in stages[1:]:
        operator, _, rest = stage.partition(" ")
        if operator == "where":
            rows = _where(rows, rest)
        elif operator == "project":
            columns = [name.strip() for name in rest.split(",")]
            missing = [name for name in columns if name not in rows.columns]
            if missing:
                raise _bad(f"Failed to resolve column expression named '{missing[0]}'")
            rows = rows.select(columns)
        elif operator == "summarize" and (match := _SUMMARIZE.match(rest.strip())):
            rows = rows.select(pl.col(match.group("column")).min().alias(match.group("name")))
        else:
            raise _bad(f"the simulator does not read the operator {stage!r}")
    return rows


def answer(result: pl.DataFrame, max_rows: int) -> dict[str, Any]:
    """The Logs query API's body for `result`: one `PrimaryResult` table; past `max_rows` the
    first `max_rows` rows and a `PartialError` (the shape the service gives a cut answer)."""
    columns = [
        {"name": name, "type": "datetime" if dtype == pl.Datetime("us", "UTC") else "string"}
        for name, dtype in result.schema.items()
    ]
    shown = result.head(max_rows)
    rows = [
        [wire.timestamp(value) if isinstance(value, datetime) else value for value in row]
        for row in shown.iter_rows()
    ]
    body: dict[str, Any] = {"tables": [{"name": "PrimaryResult", "columns": columns, "rows": rows}]}
    if result.height > max_rows:
        body["error"] = {
            "code": "PartialError",
            "message": "There were some errors when processing your query.",
            "details": [
                {
                    "code": "EngineError",
                    "message": "Something went wrong processing your query on the server.",
                    "innererror": {
                        "code": "E_QUERY_RESULT_SET_TOO_LARGE",
                        "message": (
                            "Query result set has exceeded the internal record count limit "
                            f"{max_rows} records"
                        ),
                        "severity": 2,
                        "severityName": "Error",
                    },
                }
            ],
        }
    return body
