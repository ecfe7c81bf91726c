"""The real Azure SDK clients against the simulated estate, compared with its ground truth."""

import json
import ssl
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import date, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import polars as pl
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)

from flows.azure_clients import AzureClients, StaticTokenCredential
from flows.simulator.server import COST_RETRY_AFTER_HEADERS

pytestmark = pytest.mark.simulator


@pytest.fixture
def clients(simulator) -> AzureClients:
    return AzureClients(simulator.settings())


def raw_request(simulator, path: str, *, token: str | None, method: str = "GET", body=None):
    """A plain HTTPS request (no SDK): status, headers and JSON body."""
    context = ssl.create_default_context(cafile=str(simulator.ca_bundle))
    url = path if path.startswith("https://") else simulator.arm_endpoint + path
    request = urllib.request.Request(url, method=method, data=body)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, context=context) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def by_subscription(simulator, kind: str):
    alive = simulator.estate.alive_at(simulator.clock).filter(pl.col("machine_kind") == kind)
    return {
        sub: dict(
            alive.filter(pl.col("subscription_id") == sub).select("resource_id", "state").rows()
        )
        for sub in simulator.estate.subscriptions
    }


def test_subscription_discovery(clients, simulator):
    listed = list(clients.subscriptions().subscriptions.list())
    assert sorted(s.subscription_id for s in listed) == sorted(simulator.estate.subscriptions)
    assert all(s.state == "Enabled" for s in listed)


def test_subscriptions_are_listed_in_pages_like_arm(clients, simulator):
    simulator.page_sizes.subscriptions_list = 1
    before = Counter(simulator.requests)
    listed = list(clients.subscriptions().subscriptions.list())
    assert sorted(s.subscription_id for s in listed) == sorted(simulator.estate.subscriptions)
    # Five subscriptions, one per page, the last page without a nextLink.
    assert (Counter(simulator.requests) - before)["subscriptions_list"] == 5


def test_vm_list_is_paged_to_the_end_and_equals_the_living_machines(clients, simulator):
    simulator.page_sizes.vm_list = 3
    before = simulator.requests["vm_list"]
    expected = by_subscription(simulator, "vm")
    for subscription, machines in expected.items():
        listed = list(clients.compute(subscription).virtual_machines.list_all(status_only="true"))
        states = {
            vm.id.lower(): next(
                s.code.removeprefix("PowerState/")
                for s in vm.instance_view.statuses
                if s.code.startswith("PowerState/")
            )
            for vm in listed
        }
        assert states == machines
    pages = sum(-(-len(m) // 3) or 1 for m in expected.values())
    assert simulator.requests["vm_list"] - before == pages
    assert pages > len(expected)  # paging really happened


def test_vm_get_instance_view_and_mde_extension(clients, simulator):
    machines = simulator.estate.machines().join(
        simulator.estate.alive_at(simulator.clock).select("resource_id", "state"), on="resource_id"
    )
    for row in machines.filter(pl.col("machine_kind") == "vm").head(6).iter_rows(named=True):
        compute = clients.compute(row["subscription_id"])
        # Resource group and name in another case than Compute's: ARM matches them anyway.
        group, name = row["resource_group"].upper(), row["machine_name"].lower()
        vm = compute.virtual_machines.get(group, name)
        assert vm.properties.vm_id == row["vm_id"]
        assert vm.properties.hardware_profile.vm_size == row["size"]
        assert vm.properties.storage_profile.os_disk.os_type == row["os_type"]
        assert vm.properties.time_created == row["created_at"]
        view = compute.virtual_machines.instance_view(group, name)
        assert f"PowerState/{row['state']}" in [s.code for s in view.statuses]
        extensions = compute.virtual_machine_extensions.list(group, name).value
        mde = [
            e
            for e in extensions
            if e.properties.publisher == "Microsoft.Azure.AzureDefenderForServers"
            and e.properties.type in ("MDE.Windows", "MDE.Linux")
        ]
        assert bool(mde) == row["mde_sensor"]


def test_scale_set_instances_are_machines(clients, simulator):
    expected = by_subscription(simulator, "vmss_instance")
    for subscription, machines in expected.items():
        compute = clients.compute(subscription)
        listed = {}
        for scale_set in compute.virtual_machine_scale_sets.list_all():
            group = scale_set.id.split("/")[4]
            instances = list(
                compute.virtual_machine_scale_set_vms.list(
                    group, scale_set.name, expand="instanceView"
                )
            )
            assert scale_set.sku.capacity == len(instances)
            for vm in instances:
                listed[vm.id.lower()] = vm.instance_view.statuses[-1].code.removeprefix(
                    "PowerState/"
                )
        assert listed == machines


def test_activity_log_filters_and_paging(clients, simulator):
    simulator.page_sizes.activity_log = 25
    estate = simulator.estate
    events = estate.activity_events()
    busiest = events.group_by("subscription_id", "resource_group").len().sort("len").row(-1)
    subscription, group = busiest[0], busiest[1]
    start = simulator.clock - timedelta(days=30)
    end = simulator.clock - timedelta(days=2)
    window = f"eventTimestamp ge '{start.isoformat()}' and eventTimestamp le '{end.isoformat()}'"
    monitor = clients.monitor(subscription).activity_logs

    def expected(predicate):
        rows = events.filter(
            (pl.col("subscription_id") == subscription)
            & (pl.col("event_at") >= start)
            & (pl.col("event_at") <= end)
            & predicate
        )
        return sorted(rows["event_data_id"])

    # Filtered on the resource group spelled in another case (Azure compares case-insensitively).
    before = simulator.requests["activity_log"]
    listed = list(monitor.list(filter=f"{window} and resourceGroupName eq '{group.upper()}'"))
    assert sorted(e.event_data_id for e in listed) == expected(pl.col("resource_group") == group)
    assert simulator.requests["activity_log"] - before == -(-len(listed) // 25)
    assert len(listed) > 25
    stamps = [e.event_timestamp for e in listed]
    assert stamps == sorted(stamps, reverse=True)  # newest first

    one = listed[0].resource_id
    by_uri = list(monitor.list(filter=f"{window} and resourceUri eq '{one.lower()}'"))
    assert sorted(e.event_data_id for e in by_uri) == expected(pl.col("resource_id") == one.lower())
    assert {e.correlation_id for e in by_uri} >= {listed[0].correlation_id}

    by_provider = list(monitor.list(filter=f"{window} and resourceProvider eq 'microsoft.compute'"))
    assert sorted(e.event_data_id for e in by_provider) == expected(pl.lit(True))
    nothing = list(monitor.list(filter=f"{window} and resourceProvider eq 'Microsoft.Storage'"))
    assert nothing == []

    first = listed[0]
    assert first.category.value == "Administrative"
    assert first.operation_name.value.startswith("Microsoft.Compute/")
    assert first.status.value in ("Started", "Accepted", "Succeeded", "Failed")

    selected = list(
        monitor.list(filter=f"{window} and resourceUri eq '{one}'", select="eventTimestamp,status")
    )
    assert selected[0].status is not None and selected[0].operation_name is None


def test_activity_log_keeps_90_days_before_the_clock(clients, simulator):
    subscription = simulator.estate.subscriptions[1]
    simulator.set_clock(simulator.estate.now - timedelta(days=10))
    oldest = simulator.clock - timedelta(days=90)
    window = (
        f"eventTimestamp ge '{(simulator.clock - timedelta(days=120)).isoformat()}' "
        f"and eventTimestamp le '{simulator.estate.now.isoformat()}'"
    )
    listed = list(clients.monitor(subscription).activity_logs.list(filter=window))
    events = simulator.estate.activity_events().filter(
        (pl.col("subscription_id") == subscription)
        & (pl.col("event_at") >= oldest)
        & (pl.col("event_at") <= simulator.clock)
    )
    assert len(listed) == events.height
    assert min(e.event_timestamp for e in listed) >= oldest
    assert max(e.event_timestamp for e in listed) <= simulator.clock


def test_activity_log_refuses_a_filter_without_start(simulator):
    subscription = simulator.estate.subscriptions[0]
    status, _, body = raw_request(
        simulator,
        f"/subscriptions/{subscription}/providers/microsoft.insights/eventtypes/management/values"
        "?api-version=2015-04-01&$filter=resourceGroupName%20eq%20'x'",
        token=simulator.token,
    )
    assert status == 400
    assert body["error"]["code"] == "MissingStartTime"


def cost_body(first: date, last: date, *groupings: str, granularity="Daily"):
    return {
        "type": "ActualCost",
        "timeframe": "Custom",
        "timePeriod": {"from": f"{first}T00:00:00Z", "to": f"{last}T23:59:59Z"},
        "dataset": {
            "granularity": granularity,
            "aggregation": {
                "totalCost": {"name": "Cost", "function": "Sum"},
                "totalQuantity": {"name": "UsageQuantity", "function": "Sum"},
            },
            "grouping": [{"type": "Dimension", "name": name} for name in groupings],
        },
    }


def query_all_pages(clients, subscription: str, body) -> tuple[list[str], list[list]]:
    """Follow nextLink by POSTing the same body with its $skiptoken."""
    query = clients.cost().query
    result = query.usage(f"/subscriptions/{subscription}", body)
    columns = [c.name for c in result.columns]
    rows = list(result.rows)
    while result.next_link:
        token = parse_qs(urlsplit(result.next_link).query)["$skiptoken"][0]
        result = query.usage(f"/subscriptions/{subscription}", body, params={"$skiptoken": token})
        rows.extend(result.rows)
    return columns, rows


def test_cost_query_pages_add_up_to_the_estate(clients, simulator):
    simulator.page_sizes.cost_query = 400
    estate = simulator.estate
    first, last = estate.window_start.date(), estate.now.date()
    expected = estate.cost_rows(as_of=simulator.clock)
    for subscription in estate.subscriptions:
        before = simulator.requests["cost_query"]
        body = cost_body(first, last, "ResourceId", "Meter")
        columns, rows = query_all_pages(clients, subscription, body)
        assert columns == ["Cost", "UsageQuantity", "ResourceId", "Meter", "UsageDate", "Currency"]
        mine = expected.filter(pl.col("subscription_id") == subscription)
        assert len(rows) == mine.select("usage_date", "resource_id", "meter").n_unique()
        assert simulator.requests["cost_query"] - before == -(-len(rows) // 400)
        assert sum(r[0] for r in rows) == pytest.approx(mine["cost"].sum())
        assert all(isinstance(r[4], int) and 20260715 <= r[4] <= 20261115 for r in rows)
        assert {r[5] for r in rows} == {"USD"}


def test_defender_hours_billed_match_the_true_billable_hours(clients, simulator):
    """Independently of the cost rows: Defender quantities = billable hours of the machines
    covered each day (`plans_daily`), on final (restated) days of each subscription (later for
    the lagging one), plus the workspace charge, except the deliberate anomalies; a moved
    machine's move day counts under the subscription it left."""
    estate = simulator.estate
    first = estate.window_start.date()
    body_meters = ["standard p1 node", "Standard P2 Node", "Standard P2 Node - MDATP Benefit"]
    moves = estate.moves().select(
        pl.col("to_resource_id").alias("resource_id"),
        pl.col("moved_at").dt.date().alias("moved_on"),
        "billed_under",
    )
    covered = (
        estate.plans_daily()
        .filter(pl.col("plan").is_not_null())
        .join(moves, on="resource_id", how="left")
        .with_columns(
            billed_under=pl.when(pl.col("usage_date") == pl.col("moved_on"))
            .then(pl.col("billed_under"))
            .otherwise(pl.col("subscription_id"))
        )
    )
    anomalies = estate.anomalies()
    workspaces = estate.non_machine_charges()
    lags = dict(estate.last_billed_days().select("subscription_id", "cost_lag_days").rows())
    for subscription in estate.subscriptions:
        # Final figures only: a day is restated 2 days after it starts, later by the lag.
        last = simulator.clock.date() - timedelta(days=2 + lags[subscription])
        body = cost_body(first, last, "Meter")
        body["dataset"]["filter"] = {
            "dimensions": {"name": "Meter", "operator": "In", "values": body_meters}
        }
        _, rows = query_all_pages(clients, subscription, body)
        billed = sum(r[1] for r in rows)
        in_range = (pl.col("usage_date") >= first) & (pl.col("usage_date") <= last)
        mine = pl.col("subscription_id") == subscription
        hours = covered.filter(in_range & (pl.col("billed_under") == subscription))[
            "billable_hours"
        ].sum()
        workspace = workspaces.filter(in_range & mine)["quantity"].sum()
        wrong = anomalies.filter(mine)
        adjustment = (wrong["billed_hours"] - wrong["billable_hours"]).sum()
        assert billed == pytest.approx(hours + workspace + adjustment)


def test_cost_query_dimension_filter_and_none_granularity(clients, simulator):
    estate = simulator.estate
    machine = estate.machines().filter(pl.col("defender_plan") == "P2").row(0, named=True)
    body = cost_body(
        estate.window_start.date(), estate.now.date(), "ResourceType", granularity="None"
    )
    body["dataset"]["filter"] = {
        "and": [
            {
                "dimensions": {
                    "name": "ResourceId",
                    "operator": "In",
                    "values": [machine["resource_id"].upper()],
                }
            },
            {
                "dimensions": {
                    "name": "MeterCategory",
                    "operator": "In",
                    "values": ["Virtual Machines"],
                }
            },
        ]
    }
    columns, rows = query_all_pages(clients, machine["subscription_id"], body)
    assert columns == ["Cost", "UsageQuantity", "ResourceType", "Currency"]
    hours = (
        estate.billable_hours_daily()
        .filter(
            (pl.col("resource_id") == machine["resource_id"])
            & (pl.col("usage_date") < estate.now.date() - timedelta(days=1))
        )["billable_hours"]
        .sum()
    )
    last_day = (
        estate.billable_hours_daily()
        .filter(
            (pl.col("resource_id") == machine["resource_id"])
            & (pl.col("usage_date") == estate.now.date() - timedelta(days=1))
        )["billable_hours"]
        .sum()
    )
    # The last complete day is still preliminary (80 %) at the clock.
    assert rows == [
        [
            pytest.approx(rows[0][0]),
            pytest.approx(hours + 0.8 * last_day),
            "microsoft.compute/virtualmachines",
            "USD",
        ]
    ]


def test_restated_day_differs_before_and_after(clients, simulator):
    subscription = simulator.estate.subscriptions[0]
    day = date(2026, 10, 7)
    body = cost_body(day, day, "Meter")

    def total_at(clock: datetime) -> float:
        simulator.set_clock(clock)
        _, rows = query_all_pages(clients, subscription, body)
        return sum(r[0] for r in rows)

    midnight = datetime(2026, 10, 7, tzinfo=simulator.estate.now.tzinfo)
    assert total_at(midnight + timedelta(hours=20)) == 0  # not reported while the day runs
    first_report = total_at(midnight + timedelta(days=1, hours=9))
    final = total_at(midnight + timedelta(days=3))
    assert first_report != final
    assert first_report == pytest.approx(0.8 * final)
    assert total_at(simulator.estate.now) == pytest.approx(final)


def test_cost_429_carries_only_costmanagement_retry_after_headers(clients, simulator):
    simulator.faults.cost_429_rate = 0.5  # deterministic: the 1st, 3rd, 5th... are throttled
    simulator.faults.cost_retry_after_seconds = 1
    subscription = simulator.estate.subscriptions[0]
    day = simulator.estate.now.date() - timedelta(days=5)
    body = cost_body(day, day, "Meter")
    throttled_before = simulator.requests["cost_query_429"]
    with pytest.raises(HttpResponseError) as raised:
        clients.cost().query.usage(f"/subscriptions/{subscription}", body)
    response = raised.value.response
    assert response.status_code == 429
    # azure-core did not retry the POST by itself: one throttled request reached the server.
    assert simulator.requests["cost_query_429"] - throttled_before == 1
    headers = {k.lower(): v for k, v in response.headers.items()}
    assert "retry-after" not in headers and "retry-after-ms" not in headers
    retry_after = {k: int(v) for k, v in headers.items() if k.endswith("retry-after")}
    assert set(retry_after) == set(COST_RETRY_AFTER_HEADERS)
    assert max(retry_after.values()) == 1 and min(retry_after.values()) == 0
    time.sleep(max(retry_after.values()))
    result = clients.cost().query.usage(f"/subscriptions/{subscription}", body)
    assert result.rows


def test_requests_without_the_token_are_refused(simulator):
    subscription = simulator.estate.subscriptions[0]
    status, headers, body = raw_request(simulator, f"/subscriptions/{subscription}", token=None)
    assert status == 401
    assert body["error"]["code"] == "InvalidAuthenticationToken"
    assert "invalid_token" in headers["WWW-Authenticate"]
    settings = simulator.settings()
    wrong = AzureClients(settings, credential=StaticTokenCredential("not-the-token"))
    with pytest.raises(ClientAuthenticationError):
        list(wrong.compute(subscription).virtual_machines.list_all())


def test_unknown_routes_and_resources_answer_like_arm(clients, simulator):
    subscription = simulator.estate.subscriptions[0]
    status, _, body = raw_request(
        simulator,
        f"/subscriptions/{subscription}/providers/Microsoft.Nothing/things?api-version=1",
        token=simulator.token,
    )
    assert status == 404
    assert set(body["error"]) == {"code", "message"}
    with pytest.raises(ResourceNotFoundError):
        clients.compute(subscription).virtual_machines.get("RG-Prod-Web", "no-such-vm")
    status, _, body = raw_request(
        simulator, "/subscriptions/00000000-0000-0000-0000-000000000000", token=simulator.token
    )
    assert (status, body["error"]["code"]) == (404, "SubscriptionNotFound")


def test_defender_pricings_at_subscription_and_resource_level(clients, simulator):
    """Every subscription's pricing and every living machine's and scale set's, as the ground
    truth (`Estate.pricings`) has them at the clock."""
    estate = simulator.estate
    truth = estate.pricings(simulator.clock)
    for row in truth.filter(pl.col("level") == "subscription").iter_rows(named=True):
        subscription = row["subscription_id"]
        pricing = clients.security(subscription).pricings.get(
            f"subscriptions/{subscription}", "VirtualMachines"
        )
        assert (pricing.pricing_tier, pricing.sub_plan) == (row["pricing_tier"], row["sub_plan"])
        assert pricing.enablement_time == row["enablement_time"]
    alive = estate.alive_at(simulator.clock).select("resource_id")
    scale_sets = pl.DataFrame({"resource_id": [s.arm_id.lower() for s in estate.scale_set_specs]})
    resources = pl.concat([alive, scale_sets]).join(
        truth.filter(pl.col("level") == "resource"), on="resource_id", how="left"
    )
    arm_ids = {t.machine.arm_id.lower(): t.machine.arm_id for t in estate.timelines}
    arm_ids |= {s.arm_id.lower(): s.arm_id for s in estate.scale_set_specs}
    for row in resources.iter_rows(named=True):
        subscription = row["resource_id"].split("/")[2]
        pricing = clients.security(subscription).pricings.get(
            arm_ids[row["resource_id"]], "VirtualMachines"
        )
        if row["pricing_tier"] is None:  # no setting of its own: inherits the subscription's
            assert pricing.inherited == "True"
            assert pricing.inherited_from == f"/subscriptions/{subscription}"
            continue
        assert pricing.inherited == ("True" if row["inherited"] else "False")
        assert (pricing.inherited_from or "").lower() == (row["inherited_from"] or "")
        assert (pricing.pricing_tier, pricing.sub_plan) == (row["pricing_tier"], row["sub_plan"])


def test_time_travel_shows_machines_that_were_deleted_since(clients, simulator):
    estate = simulator.estate
    deleted = (
        estate.machines()
        .filter(pl.col("deleted_at").is_not_null() & (pl.col("profile") == "short_lived"))
        .row(0, named=True)
    )
    instant = deleted["created_at"] + (deleted["deleted_at"] - deleted["created_at"]) / 2
    truth = (
        estate.state_intervals()
        .filter(
            (pl.col("resource_id") == deleted["resource_id"])
            & (pl.col("start_at") <= instant)
            & (pl.col("end_at") > instant)
        )["state"]
        .item()
    )
    compute = clients.compute(deleted["subscription_id"])
    assert deleted["resource_id"] not in {
        vm.id.lower() for vm in compute.virtual_machines.list_all()
    }
    simulator.set_clock(instant)
    view = compute.virtual_machines.instance_view(
        deleted["resource_group"], deleted["machine_name"]
    )
    assert f"PowerState/{truth}" in [s.code for s in view.statuses]
    assert deleted["resource_id"] in {vm.id.lower() for vm in compute.virtual_machines.list_all()}
    with pytest.raises(ValueError, match="outside the simulated window"):
        simulator.set_clock(estate.now + timedelta(seconds=1))


def retail_pages(simulator, query: str) -> list[dict]:
    pages = []
    url = f"/api/retail/prices?{query}"
    while url:
        status, _, page = raw_request(simulator, url, token=None)  # anonymous, like Azure's
        assert status == 200
        pages.append(page)
        url = page["NextPageLink"]
    return pages


def test_retail_prices_are_paged_filtered_and_include_trials(simulator):
    query = (
        "currencyCode='USD'&$filter=serviceName%20eq%20'Microsoft%20Defender%20for%20Cloud'%20and"
        "%20productName%20eq%20'Microsoft%20Defender%20for%20Servers'"
    )
    pages = retail_pages(simulator, query)
    items = [item for page in pages for item in page["Items"]]
    assert len(pages) > 2 and all(p["Count"] == len(p["Items"]) for p in pages)
    assert {p["BillingCurrency"] for p in pages} == {"USD"}
    assert {i["productName"] for i in items} == {"Microsoft Defender for Servers"}
    nodes = [i for i in items if i["meterName"] == "Standard P2 Node" and i["retailPrice"] > 0]
    assert {i["retailPrice"] for i in nodes if i["armRegionName"] == "eastus"} == {0.02}
    trials = [i for i in items if i["retailPrice"] == 0]
    assert trials and all("Trial" in i["skuName"] for i in trials)
    changed = [i for i in nodes if i["armRegionName"] == "westeurope"]
    assert len({i["effectiveStartDate"] for i in changed}) == 2
    p1 = retail_pages(
        simulator,
        "currencyCode=EUR&$filter=meterName%20eq%20'Standard%20P1%20Node'%20and%20"
        "armRegionName%20eq%20'westeurope'%20and%20priceType%20eq%20'Consumption'",
    )
    assert [i["retailPrice"] for i in p1[0]["Items"]] == [round(0.00672 * 0.9215, 6)]
    assert p1[0]["Items"][0]["currencyCode"] == "EUR"
    assert p1[0]["NextPageLink"] is None


def test_scale_set_vm_get_instance_view_and_extensions(clients, simulator):
    instance = (
        simulator.estate.alive_at(simulator.clock)
        .filter(pl.col("machine_kind") == "vmss_instance")
        .row(0, named=True)
    )
    machine = simulator.estate.machine_by_id[instance["resource_id"]].machine
    compute = clients.compute(instance["subscription_id"])
    group, scale_set = machine.resource_group, machine.scale_set.name
    vm = compute.virtual_machine_scale_set_vms.get(group, scale_set, machine.instance_id)
    assert (vm.instance_id, vm.properties.vm_id) == (machine.instance_id, machine.vm_id)
    view = compute.virtual_machine_scale_set_vms.get_instance_view(
        group, scale_set, machine.instance_id
    )
    assert f"PowerState/{instance['state']}" in [s.code for s in view.statuses]
    extensions = compute.virtual_machine_scale_set_vm_extensions.list(
        group, scale_set, machine.instance_id
    ).value
    assert any(e.properties.type.startswith("MDE.") for e in extensions) == machine.mde_sensor


def test_next_link_can_be_posted_as_is(simulator):
    """The Query API's nextLink carries api-version and $skiptoken: POSTing the same body to it
    returns the next page."""
    simulator.page_sizes.cost_query = 10
    subscription = simulator.estate.subscriptions[0]
    day = simulator.estate.now.date() - timedelta(days=9)
    body = json.dumps(cost_body(day, day, "ResourceId", "Meter")).encode()
    link = (
        f"/subscriptions/{subscription}/providers/Microsoft.CostManagement/query"
        "?api-version=2025-03-01"
    )
    rows = []
    while link:
        status, _, page = raw_request(
            simulator, link, token=simulator.token, method="POST", body=body
        )
        assert status == 200
        rows.extend(page["properties"]["rows"])
        link = page["properties"]["nextLink"]
    expected = simulator.estate.cost_rows(as_of=simulator.clock).filter(
        (pl.col("subscription_id") == subscription) & (pl.col("usage_date") == day)
    )
    assert len(rows) == expected.height > 10
    assert sum(r[0] for r in rows) == pytest.approx(expected["cost"].sum())
