"""The billing facts: states, operations, meters and ids, checked against the documented values."""

import pytest

from transforms import billing


def test_billable_vm_states_are_the_allocated_ones():
    assert {"running", "stopping", "stopped"} == billing.VM_BILLABLE_STATES
    for state in ("starting", "deallocating", "deallocated", "deleted", "creating"):
        assert state not in billing.VM_BILLABLE_STATES


def test_arc_machines_bill_only_while_connected():
    assert {"connected"} == billing.ARC_BILLABLE_STATES


@pytest.mark.parametrize(
    ("operation_name", "verb"),
    [
        ("Microsoft.Compute/virtualMachines/start/action", "start"),
        ("MICROSOFT.COMPUTE/VIRTUALMACHINES/DEALLOCATE/ACTION", "deallocate"),
        ("Microsoft.Compute/virtualMachines/powerOff/action", "power_off"),
        ("Microsoft.Compute/virtualMachineScaleSets/virtualMachines/restart/action", "restart"),
        ("Microsoft.Compute/virtualMachineScaleSets/virtualMachines/delete", "delete"),
        ("Microsoft.Compute/virtualMachines/write", "write"),
        ("Microsoft.Compute/virtualMachineScaleSets/write", None),
        ("Microsoft.Compute/virtualMachineScaleSets/deallocate/action", "deallocate"),
        ("Microsoft.Compute/virtualMachineScaleSets/powerOff/action", "power_off"),
        ("Microsoft.Compute/virtualMachineScaleSets/delete/action", "delete"),
        ("Microsoft.Compute/virtualMachineScaleSets/delete", "delete"),
        ("Microsoft.Compute/virtualMachines/extensions/write", None),
        ("microsoft.support/supporttickets/write", None),
    ],
)
def test_power_operation_names_map_to_verbs(operation_name, verb):
    assert billing.power_operation(operation_name) == verb


def test_every_collected_operation_name_maps_back_to_its_verb():
    names = billing.power_operation_names()
    # 6 verbs x (VM, scale-set instance) + 6 operations of a whole scale set + an Arc
    # machine's write and delete.
    assert len(names) == 20
    assert {billing.power_operation(name) for name in names} == set(billing.POWER_OPERATIONS)
    assert billing.power_operation("Microsoft.HybridCompute/machines/write") == "write"
    assert billing.power_operation("microsoft.hybridcompute/machines/delete") == "delete"
    # An Arc extension's write is not the machine's.
    assert billing.power_operation("Microsoft.HybridCompute/machines/extensions/write") is None


@pytest.mark.parametrize(
    ("meter", "description", "plan"),
    [
        ("Standard P1 Node", None, "P1"),
        ("standard p2 node ", None, "P2"),
        ("D2s v3", None, None),
        ("Standard P2 Node - MDATP Benefit", None, "P2"),
        ("Standard P1 Node-MDATP Benefit", None, "P1"),
        ("Standard P3 Node", None, None),
        ("Standard P2 Nodes", None, None),
        (None, "Microsoft Defender for Servers Plan 2 - Standard P2 Node", "P2"),
        (None, "Microsoft Defender for Storage", None),
    ],
)
def test_defender_rows_are_recognised_by_meter_or_description(meter, description, plan):
    assert billing.defender_plan(meter, description) == plan


@pytest.mark.parametrize(
    ("meter", "plan", "benefit"),
    [
        ("Standard P2 Node", "P2", None),
        ("Standard P2 Node - MDATP Benefit", "P2", "mde"),
        ("standard p1 node - mdatp benefit ", "P1", "mde"),
        ("Standard P2 Node - Some Future Variant", "P2", "some future variant"),
        ("Standard P2", None, None),
        (None, None, None),
    ],
)
def test_every_defender_meter_variant_is_recognised_with_its_benefit(meter, plan, benefit):
    assert billing.defender_meter(meter) == (plan, benefit)


def test_findings_tolerance_follows_the_partial_hours_rule():
    assert set(billing.FINDINGS_TOLERANCE_HOURS) == set(billing.PARTIAL_HOURS_MODES)
    assert billing.FINDINGS_TOLERANCE_HOURS["round_up_clock_hour"] == 1.0


def test_resource_ids_compare_case_insensitively():
    compute = "/subscriptions/AB/resourceGroups/RG-A/providers/Microsoft.Compute/virtualMachines/V1"
    costs = "/subscriptions/ab/resourcegroups/rg-a/providers/microsoft.compute/virtualmachines/v1/"
    assert billing.normalise_resource_id(compute) == billing.normalise_resource_id(costs)


def test_subscription_level_pricing_id_is_recognised_in_any_case():
    sub = "11111111-2222-3333-4444-555555555555"
    raw = f"/subscriptions/{sub.upper()}/providers/Microsoft.Security/pricings/VirtualMachines"
    assert billing.is_subscription_pricing_id(raw)
    assert billing.subscription_pricing_id(sub.upper()) == raw.lower()
    assert not billing.is_subscription_pricing_id(f"/subscriptions/{sub}/providers/x/vm")
