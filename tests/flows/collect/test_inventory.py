"""Compute wire JSON -> inventory rows: power state, MDE sensor, scale-set instances."""

import copy
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from azure.core.paging import ItemPaged

from flows.collect.inventory import (
    fetch_inventory,
    inventory_table,
    listed_extensions,
    mde_extension_type,
    power_state,
    scale_set_instance_record,
    vm_record,
)
from transforms.schemas import INVENTORY, conform

SPECS = Path(__file__).parents[2] / "fixtures" / "azure-specs"
SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
SNAPSHOT = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
MDE_LINUX = {
    "id": "x/extensions/MDE.Linux",
    "name": "MDE.Linux",
    "properties": {"publisher": "Microsoft.Azure.AzureDefenderForServers", "type": "MDE.Linux"},
}
OTHER = {
    "id": "x/extensions/AzureMonitorLinuxAgent",
    "name": "AzureMonitorLinuxAgent",
    "properties": {"publisher": "Microsoft.Azure.Monitor", "type": "AzureMonitorLinuxAgent"},
}


def spec_vm():
    """The REST spec's listed VM, given a real id, a creation time and the instance view."""
    listed = json.loads((SPECS / "VirtualMachine_ListBySubscription_ByLocation.json").read_text())
    vm = copy.deepcopy(listed["responses"]["200"]["body"]["value"][0])
    vm["id"] = (
        f"/subscriptions/{SUB}/resourceGroups/RG-Web/providers/Microsoft.Compute/virtualMachines/Web01"
    )
    vm["name"] = "Web01"
    vm["properties"]["vmId"] = "8d3b2b2a-0000-4000-8000-000000000001"
    vm["properties"]["timeCreated"] = "2026-03-01T09:30:00.1234567+00:00"
    view = json.loads((SPECS / "VirtualMachine_Get_InstanceView.json").read_text())
    vm["properties"]["instanceView"] = view["responses"]["200"]["body"]
    return vm


def test_a_listed_vm_becomes_one_row_with_its_power_state_and_no_sensor():
    record = vm_record(spec_vm(), subscription_id=SUB, extensions=[OTHER])
    assert record == {
        "resource_id": f"/subscriptions/{SUB}/resourcegroups/rg-web/providers/"
        "microsoft.compute/virtualmachines/web01",
        "subscription_id": SUB,
        "resource_group": "rg-web",
        "machine_name": "Web01",
        "location": "eastus",
        "tags": '{"RG": "rg", "testTag": "1"}',
        "machine_kind": "vm",
        "vm_id": "8d3b2b2a-0000-4000-8000-000000000001",
        "scale_set_name": None,
        "size": "Standard_A0",
        "os_type": "Windows",
        "created_at": "2026-03-01T09:30:00.1234567+00:00",
        "power_state": "running",
        "mde_sensor": False,
        "mde_extension_type": None,
        "provider": "azure",
        "status_changed_at": None,
    }


def test_the_mde_extension_is_recognised_by_publisher_and_type_only():
    assert mde_extension_type([OTHER, MDE_LINUX]) == "MDE.Linux"
    renamed = copy.deepcopy(MDE_LINUX)
    renamed["name"] = "whatever-the-deployer-chose"
    assert mde_extension_type([renamed]) == "MDE.Linux"
    impostor = copy.deepcopy(MDE_LINUX)
    impostor["properties"]["publisher"] = "Contoso"
    assert mde_extension_type([impostor]) is None


def test_listed_extensions_are_trusted_only_when_they_say_what_they_are():
    assert listed_extensions({"resources": [MDE_LINUX]}) == [MDE_LINUX]
    assert listed_extensions({"resources": []}) == []
    assert listed_extensions({"resources": [{"id": "x/extensions/MDE.Linux"}]}) is None
    assert listed_extensions({}) is None


def test_power_state_reads_the_power_state_status():
    statuses = [{"code": "ProvisioningState/succeeded"}, {"code": "PowerState/deallocated"}]
    assert power_state(statuses) == "deallocated"
    assert power_state([{"code": "ProvisioningState/creating"}]) is None
    assert power_state(None) is None


def test_a_scale_set_instance_takes_missing_facts_from_its_scale_set():
    scale_set = {
        "id": f"/subscriptions/{SUB}/resourceGroups/RG-Pool/providers/Microsoft.Compute/"
        "virtualMachineScaleSets/pool",
        "name": "pool",
        "sku": {"name": "Standard_D2s_v5", "capacity": 2},
        "properties": {
            "virtualMachineProfile": {
                "storageProfile": {"osDisk": {"osType": "Linux"}},
                "extensionProfile": {"extensions": [OTHER, MDE_LINUX]},
            }
        },
    }
    instance = {
        "id": scale_set["id"] + "/virtualMachines/3",
        "name": "pool_3",
        "instanceId": "3",
        "location": "westeurope",
        "properties": {
            "vmId": "vm-3",
            "instanceView": {"statuses": [{"code": "PowerState/stopped"}]},
        },
    }
    record = scale_set_instance_record(instance, scale_set=scale_set, subscription_id=SUB)
    assert record["resource_id"] == (
        f"/subscriptions/{SUB}/resourcegroups/rg-pool/providers/microsoft.compute/"
        "virtualmachinescalesets/pool/virtualmachines/3"
    )
    assert (record["machine_kind"], record["scale_set_name"], record["machine_name"]) == (
        "vmss_instance",
        "pool",
        "pool_3",
    )
    assert (record["size"], record["os_type"], record["power_state"]) == (
        "Standard_D2s_v5",
        "Linux",
        "stopped",
    )
    assert (record["mde_sensor"], record["mde_extension_type"]) == (True, "MDE.Linux")
    assert record["tags"] == "{}"


def test_the_table_has_the_inventory_schema_sorted_by_resource_id():
    first = vm_record(spec_vm(), subscription_id=SUB, extensions=[MDE_LINUX])
    second = dict(first, resource_id=first["resource_id"][:-1] + "0", created_at=None)
    table = inventory_table(
        [first, second], snapshot_at=SNAPSHOT, ingested_at=SNAPSHOT, scope=f"/subscriptions/{SUB}"
    )
    table = conform(table, "inventory", "test")
    assert table.schema == INVENTORY
    assert table.column("resource_id").to_pylist() == [second["resource_id"], first["resource_id"]]
    assert table.column("created_at").to_pylist() == [
        None,
        datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=UTC),
    ]
    assert table.column("mde_sensor").to_pylist() == [True, True]


def test_an_instance_without_typed_extensions_shows_its_sensor_in_view_or_extension_id():
    scale_set = {
        "id": f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/"
        "virtualMachineScaleSets/pool",
        "name": "pool",
        "properties": {},
    }

    def instance(view_extensions, extension_ids):
        return {
            "id": scale_set["id"] + "/virtualMachines/0",
            "name": "pool_0",
            "properties": {"instanceView": {"statuses": [], "extensions": view_extensions}},
            "resources": [
                {"id": f"{scale_set['id']}/virtualMachines/0/extensions/{name}"}
                for name in extension_ids
            ],
        }

    running = instance(
        [{"name": "defender", "type": "Microsoft.Azure.AzureDefenderForServers.MDE.Windows"}],
        ["defender"],
    )
    deallocated = instance([], ["AzureMonitorLinuxAgent", "MDE.Linux"])
    without = instance(
        [{"name": "x", "type": "Microsoft.Azure.Monitor.AzureMonitorLinuxAgent"}],
        ["AzureMonitorLinuxAgent"],
    )
    found = [
        scale_set_instance_record(i, scale_set=scale_set, subscription_id=SUB)["mde_extension_type"]
        for i in (running, deallocated, without)
    ]
    assert found == ["MDE.Windows", "MDE.Linux", None]


class _Model(dict):
    def as_dict(self):
        return dict(self)


class _NotFound:
    def __init__(self):
        self.status_code, self.reason, self.headers, self.request = 404, "Not Found", {}, None

    def text(self, encoding=None):
        return '{"error": {"code": "ResourceNotFound", "message": "gone"}}'


def _one_page(models):
    """A real azure-core pager serving `models` as a single page (no nextLink), as the SDK does
    for a short list."""
    return ItemPaged(lambda next_link: models, lambda answer: (None, iter(answer)))


class FakeCompute:
    """Answers like ComputeManagementClient, recording the per-VM calls made."""

    def __init__(self, vms, extensions, scale_sets=(), instances=None):
        self.calls = []
        outer = self

        class VirtualMachines:
            def list_all(self, status_only=None, **sdk_options):
                outer.calls.append(("list_all", status_only))
                return _one_page([_Model(vm) for vm in vms])

            def instance_view(self, group, name):
                outer.calls.append(("instance_view", name))
                return _Model({"statuses": [{"code": "PowerState/running"}]})

        class Extensions:
            def list(self, group, name):
                outer.calls.append(("extensions", name))
                if name not in extensions:
                    from azure.core.exceptions import ResourceNotFoundError

                    raise ResourceNotFoundError(response=_NotFound())
                return type("Answer", (), {"value": [_Model(e) for e in extensions[name]]})

        class ScaleSets:
            def list_all(self, **sdk_options):
                return _one_page([_Model(ss) for ss in scale_sets])

        class ScaleSetVms:
            def list(self, group, name, expand=None, **sdk_options):
                outer.calls.append(("scale_set_vms", name, expand))
                return _one_page([_Model(i) for i in (instances or {}).get(name, [])])

        self.virtual_machines = VirtualMachines()
        self.virtual_machine_extensions = Extensions()
        self.virtual_machine_scale_sets = ScaleSets()
        self.virtual_machine_scale_set_vms = ScaleSetVms()


def _vm(name, resources=None, view=True):
    vm = {
        "id": f"/subscriptions/{SUB}/resourceGroups/RG/providers/Microsoft.Compute/"
        f"virtualMachines/{name}",
        "name": name,
        "properties": {"vmId": name},
    }
    if view:
        vm["properties"]["instanceView"] = {"statuses": [{"code": "PowerState/deallocated"}]}
    if resources is not None:
        vm["resources"] = resources
    return vm


def test_fetching_calls_per_vm_only_where_the_list_does_not_say_and_skips_deleted_vms():
    compute = FakeCompute(
        vms=[
            _vm("typed", resources=[MDE_LINUX]),  # extensions known from the list
            _vm("ids-only", resources=[{"id": "x/extensions/MDE.Linux"}], view=False),
            _vm("deleted-meanwhile", resources=[{"id": "x/extensions/y"}]),
        ],
        extensions={"ids-only": [OTHER]},
        scale_sets=[
            {
                "id": f"/subscriptions/{SUB}/resourceGroups/RG/providers/"
                "Microsoft.Compute/virtualMachineScaleSets/pool",
                "name": "pool",
            }
        ],
        instances={
            "pool": [
                {
                    "id": f"/subscriptions/{SUB}/resourceGroups/RG/providers/"
                    "Microsoft.Compute/virtualMachineScaleSets/pool/virtualMachines/0",
                    "name": "pool_0",
                    "properties": {},
                }
            ]
        },
    )
    fetched = fetch_inventory(compute, SUB, logging.getLogger("test"), origin="test inventory")
    assert [(r["machine_name"], r["mde_sensor"], r["power_state"]) for r in fetched.records] == [
        ("typed", True, "deallocated"),
        ("ids-only", False, "running"),  # the extension list says no MDE, whatever the id says
        ("pool_0", False, None),
    ]
    assert compute.calls == [
        ("list_all", "true"),
        ("extensions", "ids-only"),
        ("instance_view", "ids-only"),
        ("extensions", "deleted-meanwhile"),
        ("scale_set_vms", "pool", "instanceView"),
    ]
    assert fetched.gone == [_vm("deleted-meanwhile")["id"]]
    assert (fetched.extension_calls, fetched.instance_view_calls) == (2, 1)


def test_a_scale_set_instance_carries_the_sets_tags_under_its_own():
    scale_set = {
        "name": "vmss-web",
        "tags": {"CostCenter": "CC-7", "env": "prod"},
        "properties": {},
    }
    instance = {
        "id": f"/subscriptions/{SUB}/resourceGroups/RG/providers/Microsoft.Compute/"
        "virtualMachineScaleSets/vmss-web/virtualMachines/3",
        "name": "vmss-web_3",
        "tags": {"env": "canary"},
        "properties": {},
    }
    record = scale_set_instance_record(instance, scale_set=scale_set, subscription_id=SUB)
    assert json.loads(record["tags"]) == {"CostCenter": "CC-7", "env": "canary"}
