"""Query API body, paging by POSTing the same body to nextLink, the ClientType header."""

import json
import logging

import pytest

from flows.collect.cost_query import (
    QueryShapeError,
    fetch_month,
    query_body,
)
from flows.collect.paging import EndlessPaging
from flows.collect.scopes import Month
from flows.collect.throttling import RetryLimits, ThrottleStats

LOG = logging.getLogger("test")
SCOPE = "/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590"
ENDPOINT = "https://127.0.0.1:8443"
COLUMNS = [
    {"name": "Cost", "type": "Number"},
    {"name": "UsageDate", "type": "Number"},
    {"name": "Currency", "type": "String"},
]


class Answer:
    def __init__(self, status, body=None, headers=None):
        self.status_code = status
        self.headers = headers or {}
        self.reason = "Bad Request" if status == 400 else "OK"
        self._text = json.dumps(body) if body is not None else ""
        self.content = self._text.encode()
        self.request = None

    def json(self):
        return json.loads(self._text)

    def text(self, encoding=None):
        return self._text


def page(rows, next_link=None, columns=COLUMNS):
    return Answer(200, {"properties": {"columns": columns, "rows": rows, "nextLink": next_link}})


class FakeCostClient:
    """Records each request sent through `send_request` and answers from a script."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.sent = []

    def send_request(self, request, **options):
        self.sent.append(
            {
                "method": request.method,
                "url": request.url,
                "body": json.loads(request.content),
                "client_type": request.headers.get("ClientType"),
                "options": options,
            }
        )
        return self.answers.pop(0)


def fetch(client, cost_type="ActualCost"):
    return fetch_month(
        client,
        arm_endpoint=ENDPOINT,
        scope=SCOPE,
        cost_type=cost_type,
        month=Month(2026, 10),
        client_type="mdecost-test",
        limits=RetryLimits(3, 0.0),
        stats=ThrottleStats(),
        log=LOG,
    )


def test_the_body_asks_daily_cost_and_quantity_for_the_whole_month_at_the_finest_grouping():
    body = query_body("AmortizedCost", Month(2026, 2))
    assert body["type"] == "AmortizedCost"
    assert body["timeframe"] == "Custom"
    assert body["timePeriod"] == {"from": "2026-02-01T00:00:00Z", "to": "2026-02-28T23:59:59Z"}
    assert body["dataset"]["granularity"] == "Daily"
    assert [a["name"] for a in body["dataset"]["aggregation"].values()] == ["Cost", "UsageQuantity"]
    assert [g["name"] for g in body["dataset"]["grouping"]] == [
        "ResourceId",
        "MeterCategory",
        "MeterSubcategory",
        "Meter",
        "ServiceName",
        "ResourceType",
        "ChargeType",
        "UnitOfMeasure",
    ]
    with pytest.raises(ValueError, match="'Usage' is not one of ActualCost, AmortizedCost"):
        query_body("Usage", Month(2026, 2))


def test_the_body_asks_for_defender_meters_only_unless_every_row_is_asked_for():
    body = query_body("ActualCost", Month(2026, 2))
    assert body["dataset"]["filter"] == {
        "dimensions": {
            "name": "Meter",
            "operator": "In",
            "values": [
                "Standard P1 Node",
                "Standard P1 Node - MDATP Benefit",
                "Standard P2 Node",
                "Standard P2 Node - MDATP Benefit",
            ],
        }
    }
    assert "filter" not in query_body("ActualCost", Month(2026, 2), cost_rows="all")["dataset"]
    wide = query_body("ActualCost", Month(2026, 2), by_subscription=True)
    assert wide["dataset"]["grouping"][0] == {"type": "Dimension", "name": "SubscriptionId"}


def test_every_page_is_fetched_by_posting_the_same_body_to_next_link():
    first = f"{ENDPOINT}{SCOPE}/providers/Microsoft.CostManagement/query?api-version=2025-03-01"
    second = f"{first}&$skiptoken=AAA"
    third = second.replace("AAA", "BBB")
    client = FakeCostClient(
        page([[1.5, 20261001, "USD"]], second),
        page([], third),  # an empty page that still links on
        page([[2.5, 20261002, "USD"], [0.25, 20261003, "USD"]]),
    )
    pages = fetch(client)
    assert pages.pages == 3
    assert pages.columns == COLUMNS
    assert pages.rows == [[1.5, 20261001, "USD"], [2.5, 20261002, "USD"], [0.25, 20261003, "USD"]]
    assert [sent["url"] for sent in client.sent] == [first, second, third]
    assert all(sent["method"] == "POST" for sent in client.sent)
    assert all(sent["body"] == client.sent[0]["body"] for sent in client.sent)
    assert all(sent["client_type"] == "mdecost-test" for sent in client.sent)
    # azure-core's own retries are off: the throttling loop alone retries and counts.
    assert all(sent["options"] == {"retry_total": 0} for sent in client.sent)


def test_a_service_refusing_the_unit_grouping_is_asked_again_without_it():
    refusal = Answer(
        400, {"error": {"code": "BadRequest", "message": "Invalid dimension name: UnitOfMeasure"}}
    )
    client = FakeCostClient(refusal, page([[1.0, 20261001, "USD"]]))
    pages = fetch(client)
    assert pages.rows == [[1.0, 20261001, "USD"]]
    groupings = [[g["name"] for g in s["body"]["dataset"]["grouping"]] for s in client.sent]
    assert groupings[0][-1] == "UnitOfMeasure"
    assert "UnitOfMeasure" not in groupings[1]


def test_pages_with_different_columns_are_refused():
    second = f"{ENDPOINT}/next"
    client = FakeCostClient(
        page([[1.0, 20261001, "USD"]], second),
        page([[1.0, "USD"]], columns=[COLUMNS[0], COLUMNS[2]]),
    )
    with pytest.raises(QueryShapeError, match="page 2 has columns"):
        fetch(client)


def test_a_next_link_that_repeats_is_refused_rather_than_followed_forever():
    loop = f"{ENDPOINT}/loop"
    client = FakeCostClient(page([], loop), page([], loop))
    with pytest.raises(EndlessPaging, match="repeats a page already read"):
        fetch(client)
