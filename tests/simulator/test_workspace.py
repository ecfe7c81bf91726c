"""The simulated Log Analytics workspace answers in the Logs query API's wire format.

Shapes are checked against the API's own spec example (tests/fixtures/specs/monitor, see
SOURCES.md there); what the workspace holds against the estate's events.
"""

import json
import logging
import urllib.error
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from flows.azure_clients import AzureClients
from flows.collect.log_analytics import PartialAnswer, QueryStats, fetch_rows, query
from flows.collect.throttling import RetryLimits
from flows.config import load_settings
from flows.simulator.workspace import WORKSPACE_ID
from tests.simulator.test_spec_shapes import example_body, get, mismatches

pytestmark = pytest.mark.simulator

PATH = f"/v1/workspaces/{WORKSPACE_ID}/query"
SINCE = datetime(2026, 9, 1, tzinfo=UTC)
UNTIL = datetime(2026, 10, 1, tzinfo=UTC)


def _ask(simulator, body: dict) -> dict:
    return get(simulator, PATH, method="POST", body=body)


def test_the_answer_has_the_spec_example_s_shape_and_the_estate_s_rows(simulator):
    example = example_body("monitor/LogAnalytics_oms-post-example.json")
    subscriptions = simulator.estate.subscriptions
    ours = _ask(
        simulator,
        {
            "query": query(subscriptions, SINCE, UNTIL),
            "timespan": f"{SINCE:%Y-%m-%dT%H:%M:%SZ}/{UNTIL:%Y-%m-%dT%H:%M:%SZ}",
        },
    )
    # Rows are positional and depend on the query: compare everything else, then each row's
    # length against its columns.
    without_rows = {"tables": [{**table, "rows": []} for table in example["tables"]]}
    assert mismatches(without_rows, ours) == []
    table = ours["tables"][0]
    assert [c["name"] for c in table["columns"]][:2] == ["TimeGenerated", "EventDataId"]
    assert {len(row) for row in table["rows"]} == {len(table["columns"])}
    truth = simulator.estate.activity_events().filter(
        (pl.col("event_at") >= SINCE) & (pl.col("event_at") < UNTIL)
    )
    assert len(table["rows"]) == truth.height
    statuses = {row[4] for row in table["rows"]}
    assert statuses <= {"Start", "Accept", "Success", "Failure"}  # a diagnostic setting's
    assert "error" not in ours


def test_an_answer_past_the_row_limit_is_cut_and_flagged_partial(simulator):
    simulator.page_sizes.log_analytics_rows = 10
    ours = _ask(simulator, {"query": query(simulator.estate.subscriptions, SINCE, UNTIL)})
    assert len(ours["tables"][0]["rows"]) == 10
    assert ours["error"]["code"] == "PartialError"
    assert ours["error"]["details"][0]["innererror"]["code"] == "E_QUERY_RESULT_SET_TOO_LARGE"


@pytest.mark.parametrize(
    "text",
    ["Heartbeat | take 10", "AzureActivity | take 10", 'AzureActivity | where Nope == "x"'],
)
def test_a_query_it_cannot_read_is_a_400_bad_argument(simulator, text):
    with pytest.raises(urllib.error.HTTPError) as refused:
        _ask(simulator, {"query": text})
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["error"]["code"] == "BadArgumentError"


def test_a_span_still_partial_at_one_minute_is_refused_naming_it(simulator, monkeypatch):
    monkeypatch.setenv("MDECOST_HISTORY__LOG_ANALYTICS_ENDPOINT", simulator.arm_endpoint)
    logs = AzureClients(load_settings(simulator.config_path)).logs()
    event_at = simulator.estate.activity_events()["event_at"][0]
    since = event_at.replace(second=0, microsecond=0) - timedelta(minutes=2)
    simulator.page_sizes.log_analytics_rows = 0  # every answer holding a row is partial
    stats = QueryStats()
    with pytest.raises(PartialAnswer, match=r"partial even for 0:01:00 .*--scope"):
        fetch_rows(
            logs,
            WORKSPACE_ID,
            simulator.estate.subscriptions,
            since,
            since + timedelta(minutes=4),
            limits=RetryLimits(0, 0.0),
            stats=stats,
            log=logging.getLogger("test"),
            origin="test",
        )
    # 4 min -> 2 -> 1: the half holding the event is cut twice, then refused.
    assert stats.splits == 2
