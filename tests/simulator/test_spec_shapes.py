"""The simulator answers with the keys, nesting and JSON value types of Azure's spec examples.

The examples are copied from Azure/azure-rest-api-specs into tests/fixtures/specs (see
SOURCES.md there). Every key an example has must exist in our answer at the same place with the
same JSON type; our answers may carry more keys. Documented optional keys we omit are listed
in OMITTED with the reason. No spec example was copied for the subscription list, VM and Arc
machine extensions, scale sets or the Retail Prices API (not an ARM API): those shapes are
exercised through the SDK models in test_server.py.
"""

import json
import ssl
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import polars as pl
import pytest

pytestmark = pytest.mark.simulator

SPECS = Path(__file__).parents[1] / "fixtures" / "specs"

# Optional keys of the examples that the simulated resources do not have, and why.
OMITTED = {
    # The simulated VMs are not in availability sets (the property is optional).
    "$.value[].properties.availabilitySet": "no availability sets",
    "$.properties.availabilitySet": "no availability sets",
    # `vhd` is for unmanaged disks; simulated VMs have managed disks (`managedDisk` instead).
    "$.value[].properties.storageProfile.osDisk.vhd": "managed disks",
    "$.properties.storageProfile.osDisk.vhd": "managed disks",
    # Arc machines: no Windows Server licence bought through Azure Arc (ESU, pay-as-you-go), no
    # private link scope.
    "$.properties.licenseProfile": "no Azure Arc licences",
    "$.properties.privateLinkScopeResourceId": "no private link scopes",
    # Connectors: only the CSPM offering has a native cloud connection (the Defender for Servers
    # offering has its own roles: defenderForServers, arcAutoProvisioning).
    "$.properties.offerings[].nativeCloudConnection": "Defender for Servers offering",
}
# Objects whose keys are data, not schema (dictionaries in the spec): only value types compared.
FREE_MAPS = {
    "$.value[].tags",
    "$.tags",
    "$.value[].claims",
    "$.value[].properties",
    "$.properties.extensions[].additionalExtensionProperties",
    "$.value[].properties.extensions[].additionalExtensionProperties",
}


def kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def mismatches(example: Any, ours: Any, path: str = "$") -> list[str]:
    """Where `ours` lacks a key of `example` or has another JSON type (a null in the example is
    a nullable field and accepts anything)."""
    if example is None:
        return []
    if kind(example) != kind(ours):
        return [f"{path}: expected {kind(example)}, got {kind(ours)}"]
    if isinstance(example, dict):
        if path in FREE_MAPS:
            kinds = {kind(v) for v in example.values()}
            return [
                f"{path}.{k}: {kind(v)} not in {kinds}"
                for k, v in ours.items()
                if kind(v) not in kinds
            ]
        problems = []
        for key, value in example.items():
            child = f"{path}.{key}"
            if child in OMITTED:
                continue
            if key not in ours:
                problems.append(f"{child}: missing")
            else:
                problems.extend(mismatches(value, ours[key], child))
        return problems
    if isinstance(example, list):
        if not example or not ours:
            return []
        if len({kind(e) for e in example}) > 1:  # a row: positional, like Query API rows
            if len(example) != len(ours):
                return [f"{path}: {len(ours)} items, the example has {len(example)}"]
            return [
                p
                for i, (e, o) in enumerate(zip(example, ours, strict=True))
                for p in mismatches(e, o, f"{path}[{i}]")
            ]
        problems = []
        for item in ours:
            # Each of our items must conform to at least one of the example's items.
            candidates = [mismatches(e, item, f"{path}[]") for e in example]
            if all(candidates):
                problems.extend(min(candidates, key=len))
        return problems
    return []


def example_body(name: str) -> dict[str, Any]:
    return json.loads((SPECS / name).read_text())["responses"]["200"]["body"]


def example_request(name: str) -> dict[str, Any]:
    return json.loads((SPECS / name).read_text())["parameters"]


def get(simulator, path: str, *, method="GET", body: dict | None = None) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=str(simulator.ca_bundle))
    request = urllib.request.Request(
        simulator.arm_endpoint + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {simulator.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, context=context) as response:
        return json.loads(response.read())


def running_windows_vm(simulator) -> dict[str, Any]:
    alive = simulator.estate.alive_at(simulator.clock)
    return alive.filter(
        (pl.col("os_type") == "Windows")
        & (pl.col("state") == "running")
        & (pl.col("machine_kind") == "vm")
    ).row(0, named=True)


def test_the_comparator_catches_missing_keys_and_wrong_types():
    example = {
        "a": 1,
        "b": {"c": "x"},
        "rows": [[1.5, "s"]],
        "list": [{"k": 1}, {"k": 2, "t": "x"}],
    }
    assert (
        mismatches(
            example, {"a": 2, "b": {"c": "y", "extra": 1}, "rows": [[2, "t"]], "list": [{"k": 3}]}
        )
        == []
    )
    assert mismatches(example, {"a": "1", "b": {}, "rows": [["2", "t"]], "list": [{"t": "x"}]}) == [
        "$.a: expected number, got string",
        "$.b.c: missing",
        "$.rows[][0]: expected number, got string",
        "$.list[].k: missing",
    ]


def test_vm_get_and_list_have_the_example_shape(simulator):
    vm = running_windows_vm(simulator)
    subscription, group, name = vm["subscription_id"], vm["resource_group"], vm["machine_name"]
    ours = get(
        simulator,
        f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines/{name}?api-version=2024-11-01",
    )
    example = example_body("compute/VirtualMachine_ListBySubscription_ByLocation.json")["value"][0]
    assert mismatches(example, ours) == []
    listed = get(
        simulator,
        f"/subscriptions/{subscription}/providers/Microsoft.Compute/virtualMachines?api-version=2024-11-01",
    )
    assert (
        mismatches(example_body("compute/VirtualMachine_ListAll_MinimumSet_Gen.json"), listed) == []
    )


def test_instance_view_has_the_example_shape(simulator):
    vm = running_windows_vm(simulator)
    ours = get(
        simulator,
        f"/subscriptions/{vm['subscription_id']}/resourceGroups/{vm['resource_group']}/providers/"
        f"Microsoft.Compute/virtualMachines/{vm['machine_name']}/instanceView?api-version=2024-11-01",
    )
    assert mismatches(example_body("compute/VirtualMachine_Get_InstanceView.json"), ours) == []


@pytest.mark.parametrize("example", ["SubscriptionQuery.json", "SubscriptionQueryGrouping.json"])
def test_cost_query_has_the_example_shape_and_columns(simulator, example):
    request = example_request(f"cost-management/{example}")["parameters"]
    # The example's filter names resource group "API", which the estate does not have: without
    # it the same query returns rows whose shape can be compared.
    request["dataset"].pop("filter", None)
    # The legacy example's response is grouped by ResourceGroup although its request does not
    # say so; ask for that grouping explicitly.
    request["dataset"].setdefault("grouping", [{"type": "Dimension", "name": "ResourceGroup"}])
    subscription = simulator.estate.subscriptions[0]
    ours = get(
        simulator,
        f"/subscriptions/{subscription}/providers/Microsoft.CostManagement/query?api-version=2025-03-01",
        method="POST",
        body=request,
    )
    expected = example_body(f"cost-management/{example}")
    assert ours["properties"]["rows"]
    assert mismatches(expected, ours) == []
    assert ours["properties"]["columns"] == expected["properties"]["columns"]


def test_activity_log_has_the_example_shape(simulator):
    simulator.page_sizes.activity_log = 5
    subscription = simulator.estate.subscriptions[0]
    window = (
        f"eventTimestamp ge '{simulator.estate.window_start.isoformat()}' "
        f"and eventTimestamp le '{simulator.clock.isoformat()}'"
    )
    ours = get(
        simulator,
        f"/subscriptions/{subscription}/providers/microsoft.insights/eventtypes/management/values"
        f"?api-version=2015-04-01&$filter={quote(window)}",
    )
    assert ours["nextLink"]
    assert mismatches(example_body("monitor/GetActivityLogsFiltered.json"), ours) == []


def test_pricings_have_the_example_shapes(simulator):
    estate = simulator.estate
    p2 = next(s for s in estate.subscription_specs if s.defender_plan == "P2")
    scope = f"/subscriptions/{p2.subscription_id}/providers/Microsoft.Security/pricings"
    single = get(simulator, f"{scope}/VirtualMachines?api-version=2024-01-01")
    assert (
        mismatches(example_body("security/GetPricingByNameVirtualMachines_example.json"), single)
        == []
    )
    listed = get(simulator, f"{scope}?api-version=2024-01-01")
    assert mismatches(example_body("security/ListPricings_example.json"), listed) == []
    inherited = (
        estate.machines()
        .filter((pl.col("subscription_id") == p2.subscription_id) & pl.col("deleted_at").is_null())
        .join(estate.pricings().filter(pl.col("level") == "resource"), on="resource_id", how="anti")
        .row(0, named=True)
    )
    arm_id = estate.machine_by_id[inherited["resource_id"]].machine.arm_id
    resource = get(
        simulator,
        f"{arm_id}/providers/Microsoft.Security/pricings/VirtualMachines?api-version=2024-01-01",
    )
    example = example_body("security/GetResourcePricingByNameVirtualMachines_example.json")
    assert mismatches(example, resource) == []
    assert resource["properties"]["inherited"] == "True"


def test_trial_and_scale_set_pricings_keep_the_example_shapes(simulator):
    """A subscription in its trial ("P19DT12H" rather than "PT0S" is still a string), a scale
    set's own setting, and an instance inheriting from its set."""
    estate = simulator.estate
    trial = next(s for s in estate.subscription_specs if s.display_name == "Contoso Analytics")
    single = get(
        simulator,
        f"/subscriptions/{trial.subscription_id}/providers/Microsoft.Security/pricings/"
        "VirtualMachines?api-version=2024-01-01",
    )
    example = example_body("security/GetPricingByNameVirtualMachines_example.json")
    assert mismatches(example, single) == []
    assert single["properties"]["freeTrialRemainingTime"] != "PT0S"
    scale_set = estate.scale_set_specs[0]
    instance = next(t.machine for t in estate.timelines if t.machine.scale_set is scale_set)
    resource_example = example_body("security/GetResourcePricingByNameVirtualMachines_example.json")
    for arm_id, inherited in ((scale_set.arm_id, "False"), (instance.arm_id, "True")):
        resource = get(
            simulator,
            f"{arm_id}/providers/Microsoft.Security/pricings/VirtualMachines?api-version=2024-01-01",
        )
        assert resource["properties"]["inherited"] == inherited
        if (
            inherited == "True"
        ):  # the example is an inherited pricing; an own one has no inheritedFrom
            assert mismatches(resource_example, resource) == []


def item_mismatches(examples: list[Any], items: list[Any]) -> list[str]:
    """Each listed resource against the closest example resource, from `$` (a list's
    `$.value[].properties` is a free map for the pricings, not for these resources)."""
    return [
        problem
        for item in items
        for problem in min((mismatches(example, item) for example in examples), key=len)
    ]


def test_arc_machines_have_the_example_shape(simulator):
    """Every Arc machine (on premises, AWS, GCP; Connected, Expired) as the list returns it."""
    production = simulator.estate.connector_specs[0].subscription.subscription_id
    listed = get(
        simulator,
        f"/subscriptions/{production}/providers/Microsoft.HybridCompute/machines"
        "?api-version=2024-07-10",
    )
    assert {m["properties"]["status"] for m in listed["value"]} == {"Connected", "Expired"}
    examples = example_body("hybridcompute/Machines_ListBySubscription.json")["value"]
    assert item_mismatches(examples, listed["value"]) == []


def test_security_connectors_have_the_example_shape(simulator):
    production = simulator.estate.connector_specs[0].subscription.subscription_id
    listed = get(
        simulator,
        f"/subscriptions/{production}/providers/Microsoft.Security/securityConnectors"
        "?api-version=2023-10-01-preview",
    )
    assert {c["properties"]["environmentName"] for c in listed["value"]} == {"AWS", "GCP"}
    examples = example_body("security/GetSecurityConnectorsSubscription_example.json")["value"]
    assert item_mismatches(examples, listed["value"]) == []
