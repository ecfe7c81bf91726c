"""Collection under faults the simulator injects: 5xx, stalls past the read timeout, truncated
JSON, an unexpected extra column, empty pages that link on, a nextLink back to a page read.

Each fault, when it passes, costs a bounded number of retries and the lake ends byte-for-byte as
after a clean run; when it persists, the chunk fails with an error naming its scope and month
and the partition collected before stays byte-for-byte in place.

The figures are the retry arithmetic of the settings below: `max_retries` 2 means 1 try + 2
retries = 3 requests per chunk before giving up (azure-core's own retries for SDK calls, the
`throttling` loop for Cost Management queries); Prefect's task retries (2) multiply that by 3.
"""

import json
import ssl
import time
import urllib.request
from collections import Counter
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from azure.core.exceptions import HttpResponseError, ServiceResponseTimeoutError

import flows.collect
from flows.azure_clients import UnreadableResponseBody
from flows.collect import (
    CollectIncomplete,
    collect,
    collect_costs,
    collect_inventory,
    collect_power_events,
    collect_pricings,
    discover_scopes,
)
from flows.collect.paging import MAX_EMPTY_PAGES_IN_A_ROW, EndlessPaging
from flows.collect.throttling import RetriesExhausted
from flows.lake import partition_path
from transforms.costs import CostDataError

pytestmark = pytest.mark.simulator

MAX_RETRIES = 2
REQUESTS_PER_TRY = 1 + MAX_RETRIES
READ_TIMEOUT = 0.4
# Longer than the read timeout: the client gives up on a stalled answer.
STALL = 1.0
MONTH = "2026-10"  # within the restatement window of the estate's present: always re-collected
COST_TYPE = "ActualCost"
TRANSIENT_KINDS = ["server_error", "stall", "truncated_json"]
DATASETS_SNAPSHOT = ("inventory", "pricings")


@pytest.fixture
def lake(simulator, tmp_path, monkeypatch) -> Path:
    """A lake of its own, small waits and timeouts, few retries."""
    monkeypatch.setenv("MDECOST_LAKE__PATH", str(tmp_path))
    monkeypatch.setenv("MDECOST_COLLECT__MAX_RETRIES", str(MAX_RETRIES))
    monkeypatch.setenv("MDECOST_COLLECT__MAX_RETRY_WAIT_SECONDS", "0.05")
    monkeypatch.setenv("MDECOST_COLLECT__READ_TIMEOUT_SECONDS", str(READ_TIMEOUT))
    return tmp_path


@pytest.fixture
def scope(simulator) -> str:
    return f"/subscriptions/{simulator.estate.subscriptions[0]}"


def costs_chunk(simulator, scope: str):
    """Collect one month of one scope's costs (the task's own code, without Prefect)."""
    now = simulator.estate.now
    return collect_costs.fn(simulator.config_path, scope, MONTH, COST_TYPE, now, now)


def power_events_chunk(simulator, scope: str, month: str = "2026-11"):
    now = simulator.estate.now
    return collect_power_events.fn(simulator.config_path, scope, month, now, now)


def costs_file(lake: Path, scope: str) -> Path:
    partition = {
        "source": "query",
        "month": MONTH,
        "subscription_id": scope.rsplit("/", 1)[1],
        "cost_type": COST_TYPE,
    }
    return partition_path(lake, "costs", partition)


def events_file(lake: Path, scope: str, month: str = "2026-11") -> Path:
    partition = {"month": month, "subscription_id": scope.rsplit("/", 1)[1]}
    return partition_path(lake, "power_events", partition)


def served(simulator, before: Counter) -> Counter:
    return Counter(simulator.requests) - before


# --- the simulator's fault controls ---------------------------------------------------------
def raw_post(simulator, path: str, body: dict) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(simulator.ca_bundle))
    url = path if path.startswith("https://") else simulator.arm_endpoint + path
    request = urllib.request.Request(url, method="POST", data=json.dumps(body).encode())
    request.add_header("Authorization", f"Bearer {simulator.token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, context=context) as response:
        return response.status, response.read()


def query_path(scope: str) -> str:
    return f"{scope}/providers/Microsoft.CostManagement/query?api-version=2025-03-01"


QUERY = {
    "type": "ActualCost",
    "timeframe": "Custom",
    "timePeriod": {"from": "2026-10-01T00:00:00Z", "to": "2026-10-31T23:59:59Z"},
    "dataset": {
        "granularity": "Daily",
        "aggregation": {"totalCost": {"name": "Cost", "function": "Sum"}},
        "grouping": [{"type": "Dimension", "name": "ResourceId"}],
    },
}


def test_injected_faults_alter_exactly_the_answers_asked_for(simulator, scope):
    clean = json.loads(raw_post(simulator, query_path(scope), QUERY)[1])["properties"]
    simulator.faults.inject("truncated_json", times=1)
    simulator.faults.inject("extra_column", times=1, extra_column=("Extra", "Number"))
    status, cut = raw_post(simulator, query_path(scope), QUERY)
    # The first pending fault of the route is served first; HTTP itself is intact.
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut)
    assert status == 200
    extra = json.loads(raw_post(simulator, query_path(scope), QUERY)[1])["properties"]
    assert extra["columns"] == [{"name": "Extra", "type": "Number"}, *clean["columns"]]
    assert extra["rows"] == [[1.0, *row] for row in clean["rows"]]
    simulator.faults.inject("empty_page", times=2)
    first = json.loads(raw_post(simulator, query_path(scope), QUERY)[1])["properties"]
    second = json.loads(raw_post(simulator, first["nextLink"], QUERY)[1])["properties"]
    third = json.loads(raw_post(simulator, second["nextLink"], QUERY)[1])["properties"]
    assert first["rows"] == second["rows"] == []
    assert len({first["nextLink"], second["nextLink"]}) == 2  # a new skiptoken each time
    assert third == {**clean, "nextLink": None} and simulator.faults.injected == []


def test_a_fault_that_cannot_fit_its_route_is_refused(simulator):
    with pytest.raises(ValueError, match="pricings does not page; empty_page fits"):
        simulator.faults.inject("empty_page", "pricings")
    with pytest.raises(ValueError, match="vm_get does not page; repeated_link fits"):
        simulator.faults.inject("repeated_link", "vm_get")
    with pytest.raises(ValueError, match="an extra column is a Query API fault"):
        simulator.faults.inject("extra_column", "vm_list")
    with pytest.raises(ValueError, match="route 'nowhere' is not one of"):
        simulator.faults.inject("stall", "nowhere")
    with pytest.raises(ValueError, match="a server error has a 5xx status, got 429"):
        simulator.faults.inject("server_error", status=429)


# --- Cost Management queries ----------------------------------------------------------------
@pytest.mark.parametrize("kind", TRANSIENT_KINDS)
def test_a_passing_fault_on_cost_queries_is_retried_and_the_lake_is_as_after_a_clean_run(
    simulator, lake, scope, kind
):
    costs_chunk(simulator, scope)
    clean = costs_file(lake, scope).read_bytes()
    simulator.faults.inject(kind, times=2, stall_seconds=STALL)
    before = Counter(simulator.requests)
    result = costs_chunk(simulator, scope)
    assert (result.failure, result.server_errors, result.pages) == (None, 2, 1)
    # Two faulty answers, then the page: three requests, no more.
    assert served(simulator, before) == Counter({"cost_query": 3, f"fault_{kind}": 2})
    assert costs_file(lake, scope).read_bytes() == clean


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("server_error", "503 server error"),
        ("stall", "no answer within [collect] read_timeout_seconds"),
        ("truncated_json", "unreadable response body"),
    ],
)
def test_a_persistent_fault_on_cost_queries_names_scope_and_month_and_keeps_the_old_partition(
    simulator, lake, scope, kind, problem
):
    costs_chunk(simulator, scope)
    clean = costs_file(lake, scope).read_bytes()
    simulator.faults.inject(kind, stall_seconds=STALL)
    before = Counter(simulator.requests)
    started = time.monotonic()
    with pytest.raises(RetriesExhausted) as raised:
        costs_chunk(simulator, scope)
    assert str(raised.value).startswith(
        f"cost query {scope} {MONTH} {COST_TYPE} page 1: still {problem} "
        f"after {MAX_RETRIES} retries"
    )
    assert served(simulator, before)[f"fault_{kind}"] == REQUESTS_PER_TRY
    assert costs_file(lake, scope).read_bytes() == clean
    # Bounded: at most 3 read timeouts and 2 capped waits (a stall ends at the read timeout).
    assert time.monotonic() - started < REQUESTS_PER_TRY * READ_TIMEOUT + 2


def test_an_extra_dimension_column_is_read_by_name_and_changes_nothing(simulator, lake, scope):
    costs_chunk(simulator, scope)
    clean = costs_file(lake, scope).read_bytes()
    # Inserted FIRST: a reader going by position would take it for the cost.
    simulator.faults.inject("extra_column", extra_column=("BillingPeriod", "String"))
    result = costs_chunk(simulator, scope)
    assert (result.failure, result.server_errors) == (None, 0)
    assert costs_file(lake, scope).read_bytes() == clean


def test_an_extra_number_column_is_refused_naming_scope_and_month_and_the_lake_keeps_its_own(
    simulator, lake, scope
):
    costs_chunk(simulator, scope)
    clean = costs_file(lake, scope).read_bytes()
    simulator.faults.inject("extra_column", extra_column=("CostInSomething", "Number"))
    before = Counter(simulator.requests)
    with pytest.raises(CostDataError) as raised:
        costs_chunk(simulator, scope)
    assert str(raised.value).startswith(
        f"cost query {scope} {MONTH} {COST_TYPE}: unexpected Number column 'CostInSomething'"
    )
    # Unreadable data is not asked for again: one request.
    assert served(simulator, before)["cost_query"] == 1
    assert costs_file(lake, scope).read_bytes() == clean


def test_empty_pages_that_link_on_are_followed_and_an_endless_run_of_them_is_refused(
    simulator, lake, scope
):
    costs_chunk(simulator, scope)
    clean = costs_file(lake, scope).read_bytes()
    simulator.faults.inject("empty_page", times=3)
    result = costs_chunk(simulator, scope)
    assert (result.failure, result.pages) == (None, 4)  # three empty pages, then the rows
    assert costs_file(lake, scope).read_bytes() == clean

    simulator.faults.inject("empty_page")
    before = Counter(simulator.requests)
    with pytest.raises(EndlessPaging) as raised:
        costs_chunk(simulator, scope)
    assert str(raised.value) == (
        f"cost query {scope} {MONTH} {COST_TYPE}: {MAX_EMPTY_PAGES_IN_A_ROW} empty pages in a "
        "row, each with a nextLink; the service is not making progress, run again later"
    )
    assert served(simulator, before)["cost_query"] == MAX_EMPTY_PAGES_IN_A_ROW
    assert costs_file(lake, scope).read_bytes() == clean


# --- SDK calls (Activity Log, Compute): azure-core retries, bounded by the same settings ------
@pytest.mark.parametrize("kind", [*TRANSIENT_KINDS, "empty_page"])
def test_a_passing_fault_on_the_activity_log_is_retried_and_the_lake_is_as_after_a_clean_run(
    simulator, lake, scope, kind
):
    power_events_chunk(simulator, scope)
    clean = events_file(lake, scope).read_bytes()
    simulator.faults.inject(kind, "activity_log", times=2, stall_seconds=STALL)
    before = Counter(simulator.requests)
    assert power_events_chunk(simulator, scope).failure is None
    assert served(simulator, before)[f"fault_{kind}"] == 2
    assert events_file(lake, scope).read_bytes() == clean


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("server_error", HttpResponseError),
        ("stall", ServiceResponseTimeoutError),
        ("truncated_json", UnreadableResponseBody),
    ],
)
def test_a_persistent_fault_on_the_activity_log_keeps_the_old_partition(
    simulator, lake, scope, kind, error
):
    power_events_chunk(simulator, scope)
    clean = events_file(lake, scope).read_bytes()
    simulator.faults.inject(kind, "activity_log", stall_seconds=STALL)
    before = Counter(simulator.requests)
    with pytest.raises(error):
        power_events_chunk(simulator, scope)
    assert served(simulator, before)[f"fault_{kind}"] == REQUESTS_PER_TRY
    assert events_file(lake, scope).read_bytes() == clean


@pytest.mark.parametrize("kind", TRANSIENT_KINDS)
def test_a_passing_fault_on_compute_and_security_calls_is_retried_and_the_snapshots_are_unchanged(
    simulator, lake, scope, kind
):
    now = simulator.estate.now
    subscription_id = scope.rsplit("/", 1)[1]
    snapshot = {"snapshot_date": now.date().isoformat(), "subscription_id": subscription_id}

    def snapshots():
        machines = collect_inventory.fn(simulator.config_path, scope, now, now)
        plans = collect_pricings.fn(simulator.config_path, scope, now, now, machines)
        assert (machines.failure, plans.failure) == (None, None)
        return [partition_path(lake, name, snapshot).read_bytes() for name in DATASETS_SNAPSHOT]

    clean = snapshots()
    # The VM list (azure.core.rest responses) and the pricings (azure-mgmt-security's legacy
    # transport responses) both meet the fault twice.
    simulator.faults.inject(kind, "vm_list", times=2, stall_seconds=STALL)
    simulator.faults.inject(kind, "resource_pricings", times=2, stall_seconds=STALL)
    before = Counter(simulator.requests)
    assert snapshots() == clean
    assert served(simulator, before)[f"fault_{kind}"] == 4


# --- the flow: failures reported by scope and month, Prefect's retries bounded ----------------
@pytest.fixture
def quick_task_retries(monkeypatch):
    """The flow's tasks as configured, but with no delay between their retries."""
    for name in ("collect_inventory", "collect_pricings", "collect_power_events", "collect_costs"):
        task = getattr(flows.collect, name)
        monkeypatch.setattr(flows.collect, name, task.with_options(retry_delay_seconds=0))


def test_a_flow_under_persistent_faults_names_each_failed_scope_and_month_and_keeps_the_lake(
    simulator, prefect_harness, lake, scope, quick_task_retries
):
    window = (date(2026, 10, 20), date(2026, 11, 1))
    as_of = simulator.estate.now

    def run():
        return collect(
            start=window[0],
            end=window[1],
            scopes=[scope],
            as_of=as_of,
            config_file=simulator.config_path,
        )

    run()
    month_files = [costs_file(lake, scope), events_file(lake, scope, MONTH)]
    clean = [path.read_bytes() for path in month_files]
    simulator.faults.inject("stall", "cost_query", stall_seconds=STALL)
    simulator.faults.inject("server_error", "activity_log", status=500)
    before = Counter(simulator.requests)
    with pytest.raises(CollectIncomplete) as raised:
        run()
    lines = str(raised.value).splitlines()
    assert (
        f"  costs {scope} {MONTH} {COST_TYPE}: NOT READ - RetriesExhausted: cost query "
        f"{scope} {MONTH} {COST_TYPE} page 1: still no answer within [collect] "
        "read_timeout_seconds after 2 retries; run again later, or raise [collect] max_retries "
        "/ lower [collect] cost_query_concurrency" in lines
    )
    assert any(
        line.startswith(
            f"  power_events {scope} {MONTH}: NOT READ - HttpResponseError: (InternalServerError)"
        )
        for line in lines
    )
    assert [path.read_bytes() for path in month_files] == clean
    # Each failing task: 3 Prefect tries x 3 requests.
    requests = served(simulator, before)
    assert requests["fault_stall"] == 3 * REQUESTS_PER_TRY
    # The Activity Log is read for October and November: both fail.
    assert requests["fault_server_error"] == 2 * 3 * REQUESTS_PER_TRY


def test_unreadable_cost_data_fails_its_chunk_once_without_prefect_retrying_it(
    simulator, prefect_harness, lake, scope, quick_task_retries
):
    simulator.faults.inject("extra_column", "cost_query", extra_column=("Odd", "Number"))
    before = Counter(simulator.requests)
    with pytest.raises(CollectIncomplete) as raised:
        collect(
            start=date(2026, 10, 20),
            end=date(2026, 11, 1),
            scopes=[scope],
            as_of=simulator.estate.now,
            config_file=simulator.config_path,
        )
    assert [chunk.line() for chunk in raised.value.summary.failures] == [
        f"costs {scope} {MONTH} {COST_TYPE}: NOT READ - CostDataError: cost query {scope} "
        f"{MONTH} {COST_TYPE}: unexpected Number column 'Odd' in the Query API result; mdecost "
        "asks for Daily Cost and UsageQuantity grouped by dimensions only - check the query sent"
    ]
    assert served(simulator, before)["cost_query"] == 1
    assert not costs_file(lake, scope).exists()
    assert pl.read_parquet(events_file(lake, scope, MONTH)).height > 0


# --- SDK listings: empty pages that link on, a nextLink back to a page already read ---------
SNAPSHOT_DATE = "2026-11-15"  # the estate's present
# Compute's three lists (simulator route, the listing as errors name it). Subscription 0 has
# one scale set, vmss-web.
COMPUTE_LISTINGS = [
    ("vm_list", "virtual machines list"),
    ("vmss_list", "scale sets list"),
    ("vmss_vm_list", "instances list of scale set vmss-web"),
]
NO_PROGRESS = (
    f"{MAX_EMPTY_PAGES_IN_A_ROW} empty pages in a row, each with a nextLink; the service is not "
    "making progress, run again later"
)


def inventory_chunk(simulator, scope: str):
    now = simulator.estate.now
    return collect_inventory.fn(simulator.config_path, scope, now, now)


def snapshot_file(lake: Path, scope: str, dataset: str = "inventory") -> Path:
    partition = {"snapshot_date": SNAPSHOT_DATE, "subscription_id": scope.rsplit("/", 1)[1]}
    return partition_path(lake, dataset, partition)


def test_a_few_empty_pages_on_every_compute_list_are_followed_and_the_snapshot_is_unchanged(
    simulator, lake, scope
):
    before = Counter(simulator.requests)
    inventory_chunk(simulator, scope)
    clean_requests = served(simulator, before)
    clean = snapshot_file(lake, scope).read_bytes()
    for route, _ in COMPUTE_LISTINGS:
        simulator.faults.inject("empty_page", route, times=3)
    before = Counter(simulator.requests)
    assert inventory_chunk(simulator, scope).failure is None
    requests = served(simulator, before)
    # Each list: its clean pages plus the three empty ones, followed.
    assert {route: requests[route] - clean_requests[route] for route, _ in COMPUTE_LISTINGS} == {
        "vm_list": 3,
        "vmss_list": 3,
        "vmss_vm_list": 3,
    }
    assert requests["fault_empty_page"] == 9
    assert snapshot_file(lake, scope).read_bytes() == clean


@pytest.mark.parametrize(("route", "listing"), COMPUTE_LISTINGS)
def test_endless_empty_pages_on_a_compute_list_name_scope_and_snapshot_and_keep_the_old_one(
    simulator, lake, scope, route, listing
):
    inventory_chunk(simulator, scope)
    clean = snapshot_file(lake, scope).read_bytes()
    simulator.faults.inject("empty_page", route)
    before = Counter(simulator.requests)
    with pytest.raises(EndlessPaging) as raised:
        inventory_chunk(simulator, scope)
    assert str(raised.value) == f"inventory of {scope} at {SNAPSHOT_DATE}: {listing}: {NO_PROGRESS}"
    # 50 empty pages read, the 50th's nextLink not followed.
    assert served(simulator, before)[route] == 50
    assert snapshot_file(lake, scope).read_bytes() == clean


def test_forty_nine_empty_activity_log_pages_then_the_events_are_all_collected(
    simulator, lake, scope
):
    before = Counter(simulator.requests)
    power_events_chunk(simulator, scope)
    clean_pages = served(simulator, before)["activity_log"]
    clean = events_file(lake, scope).read_bytes()
    simulator.faults.inject("empty_page", "activity_log", times=49)
    before = Counter(simulator.requests)
    assert power_events_chunk(simulator, scope).failure is None
    assert served(simulator, before)["activity_log"] == clean_pages + 49
    assert events_file(lake, scope).read_bytes() == clean


def test_endless_empty_activity_log_pages_name_scope_and_month_and_keep_the_old_partition(
    simulator, lake, scope
):
    power_events_chunk(simulator, scope)
    clean = events_file(lake, scope).read_bytes()
    simulator.faults.inject("empty_page", "activity_log")
    before = Counter(simulator.requests)
    with pytest.raises(EndlessPaging) as raised:
        power_events_chunk(simulator, scope)
    assert (
        str(raised.value)
        == f"power events of {scope} for 2026-11: Activity Log list: {NO_PROGRESS}"
    )
    assert served(simulator, before)["activity_log"] == 50
    assert events_file(lake, scope).read_bytes() == clean


def repeated_link_refusal(lake: Path, scope: str, route: str) -> tuple[str, Path]:
    """The start of the refusal and the partition kept, for a nextLink back to the page read."""
    if route == "activity_log":
        return f"power events of {scope} for 2026-11: Activity Log list: ", events_file(lake, scope)
    if route == "cost_query":
        return f"cost query {scope} {MONTH} {COST_TYPE}: ", costs_file(lake, scope)
    return f"inventory of {scope} at {SNAPSHOT_DATE}: virtual machines list: ", snapshot_file(
        lake, scope
    )


@pytest.mark.parametrize("route", ["vm_list", "activity_log", "cost_query"])
def test_a_next_link_back_to_the_page_just_read_is_refused_and_the_old_partition_kept(
    simulator, lake, scope, route
):
    def chunk():
        if route == "activity_log":
            return power_events_chunk(simulator, scope)
        if route == "cost_query":
            return costs_chunk(simulator, scope)
        return inventory_chunk(simulator, scope)

    chunk()
    start, kept = repeated_link_refusal(lake, scope, route)
    clean = kept.read_bytes()
    # Once is enough: following the link would read the first page's rows twice.
    simulator.faults.inject("repeated_link", route, times=1)
    before = Counter(simulator.requests)
    with pytest.raises(EndlessPaging) as raised:
        chunk()
    message = str(raised.value)
    assert message.startswith(f"{start}nextLink {simulator.arm_endpoint}{scope}/providers/")
    assert message.endswith(" repeats a page already read")
    # The first page links to itself: refused before a second request.
    assert served(simulator, before)[route] == 1
    assert kept.read_bytes() == clean


def test_a_flow_under_endless_paging_names_each_scope_and_month_once_and_keeps_the_lake(
    simulator, prefect_harness, lake, scope, quick_task_retries
):
    window = (date(2026, 10, 20), date(2026, 11, 1))

    def run():
        return collect(
            start=window[0],
            end=window[1],
            scopes=[scope],
            as_of=simulator.estate.now,
            config_file=simulator.config_path,
        )

    run()
    kept = [
        snapshot_file(lake, scope),
        snapshot_file(lake, scope, "pricings"),
        events_file(lake, scope, "2026-10"),
        events_file(lake, scope, "2026-11"),
        costs_file(lake, scope),
    ]
    clean = [path.read_bytes() for path in kept]
    simulator.faults.inject("empty_page", "vm_list")
    simulator.faults.inject("empty_page", "activity_log")
    simulator.faults.inject("repeated_link", "cost_query")
    before = Counter(simulator.requests)
    with pytest.raises(CollectIncomplete) as raised:
        run()
    lines = {chunk.line() for chunk in raised.value.summary.failures}
    assert {
        f"inventory {scope} snapshot: NOT READ - EndlessPaging: inventory of {scope} at "
        f"{SNAPSHOT_DATE}: virtual machines list: {NO_PROGRESS}",
        f"power_events {scope} 2026-10: NOT READ - EndlessPaging: power events of {scope} for "
        f"2026-10: Activity Log list: {NO_PROGRESS}",
        f"power_events {scope} 2026-11: NOT READ - EndlessPaging: power events of {scope} for "
        f"2026-11: Activity Log list: {NO_PROGRESS}",
    } <= lines
    assert any(
        line.startswith(
            f"costs {scope} {MONTH} {COST_TYPE}: NOT READ - EndlessPaging: cost query {scope} "
            f"{MONTH} {COST_TYPE}: nextLink "
        )
        for line in lines
    )
    # The plans wait for the machines: not asked for, the old snapshot stays.
    assert [chunk.line() for chunk in raised.value.summary.chunks if chunk.skipped] == [
        f"pricings {scope} snapshot: skipped - the inventory could not be read, so machine "
        "overrides are unknown"
    ]
    assert [path.read_bytes() for path in kept] == clean
    # Refused once per chunk, never retried by Prefect: 50 empty VM pages, 50 empty Activity Log
    # pages for each of October and November, one cost query.
    requests = served(simulator, before)
    assert (requests["vm_list"], requests["activity_log"], requests["cost_query"]) == (50, 100, 1)


def test_subscription_discovery_follows_empty_pages_and_refuses_endless_ones(simulator):
    simulator.faults.inject("empty_page", "subscriptions_list", times=2)
    discovered = discover_scopes.fn(simulator.config_path)
    assert sorted(discovered) == sorted(
        f"/subscriptions/{s}" for s in simulator.estate.subscriptions
    )
    simulator.faults.inject("empty_page", "subscriptions_list")
    before = Counter(simulator.requests)
    with pytest.raises(EndlessPaging, match=f"^subscription discovery: {NO_PROGRESS}$"):
        discover_scopes.fn(simulator.config_path)
    assert served(simulator, before)["subscriptions_list"] == 50
