"""The Defender for Servers billing facts mdecost encodes, in one place, each with its source.

Every other module asks this one which power states are billable, which meters are Defender
for Servers, how a resource id is normalised and what a subscription-level charge looks like.
Where a fact is unconfirmed by Microsoft it is a setting elsewhere with the default given here.
"""

from __future__ import annotations

import re
from typing import Final

import polars as pl

# --- Billable power states ------------------------------------------------------------------
# Source: Microsoft Learn, defender-for-cloud/faq-defender-for-servers ("Azure VMs are billed
# while Running, Stopping, Stopped (allocated); not while Starting, Deallocating, Deallocated").
# The power state names are those of the Compute instance view, `PowerState/<state>`
# (Learn: virtual-machines/states-billing).
VM_POWER_STATES: Final = (
    "creating",
    "starting",
    "running",
    "stopping",
    "stopped",
    "deallocating",
    "deallocated",
    "deleting",
    "deleted",
)
VM_BILLABLE_STATES: Final = frozenset({"running", "stopping", "stopped"})

# Source: same FAQ: "Azure Arc machines are billed while Connected; not while Offline,
# Disconnected or Expired".
ARC_STATES: Final = ("connected", "disconnected", "offline", "expired")
ARC_BILLABLE_STATES: Final = frozenset({"connected"})

# Source: same FAQ: "every VM scale set instance counts" - each instance is a machine of its own.
MACHINE_KINDS: Final = ("vm", "vmss_instance", "arc")

# --- Activity Log power operations ----------------------------------------------------------
# Source: Azure resource provider operations (Learn: role-based-access-control/resource-provider-
# operations#microsoftcompute); shutdowns from inside the guest OS log nothing (the VM stays
# allocated and billable), see BILLING-FACTS "Compute, Monitor, Security".
POWER_OPERATIONS: Final = ("start", "deallocate", "power_off", "restart", "write", "delete")
_OPERATION_VERBS: Final = {
    "start/action": "start",
    "deallocate/action": "deallocate",
    "poweroff/action": "power_off",
    "restart/action": "restart",
    "write": "write",
    "delete": "delete",
}
_COMPUTE_RESOURCE_TYPES: Final = (
    "microsoft.compute/virtualmachines",
    "microsoft.compute/virtualmachinescalesets/virtualmachines",
)
# Each operation logs Started, (Accepted,) Succeeded or Failed under one correlationId.
EVENT_STATUSES: Final = ("Started", "Accepted", "Succeeded", "Failed")
# The same statuses as a diagnostic setting spells them (Log Analytics `ActivityStatusValue`,
# archive storage `resultType`): Start / Accept / Success / Failure; the legacy Log Analytics
# connector wrote the Activity Log's own spelling. Source: Learn, azure-monitor/essentials/
# activity-log-schema ("Mapping to diagnostic settings schema"). Keys are lower-cased.
_STATUS_SPELLINGS: Final = {
    **{status.lower(): status for status in EVENT_STATUSES},
    "start": "Started",
    "accept": "Accepted",
    "success": "Succeeded",
    "failure": "Failed",
}


def event_status_expr(status: pl.Expr) -> pl.Expr:
    """The Activity Log spelling (`EVENT_STATUSES`) of a status in any known spelling, compared
    without case; null for a status that is none of them (such an event is not used)."""
    return (
        status.str.strip_chars()
        .str.to_lowercase()
        .replace_strict(_STATUS_SPELLINGS, default=None, return_dtype=pl.String)
    )


def power_operation(operation_name: str) -> str | None:
    """Map an Activity Log operationName to mdecost's verb, or None if it is not a power operation.

    Only compute machine operations count; a scale set's own operations (the set, not an
    instance) and every other provider return None.
    """
    lowered = operation_name.lower()
    for resource_type in _COMPUTE_RESOURCE_TYPES:
        prefix = resource_type + "/"
        if lowered.startswith(prefix):
            return _OPERATION_VERBS.get(lowered[len(prefix) :])
    return None


# Each verb's operation path in Azure's own spelling, after the resource type.
OPERATION_PATHS: Final = {
    "start": "start/action",
    "deallocate": "deallocate/action",
    "power_off": "powerOff/action",
    "restart": "restart/action",
    "write": "write",
    "delete": "delete",
}


def power_operation_names() -> list[str]:
    """Every Activity Log operationName mdecost collects, in Azure's own spelling."""
    return [
        f"{base}/{OPERATION_PATHS[verb]}"
        for base in (
            "Microsoft.Compute/virtualMachines",
            "Microsoft.Compute/virtualMachineScaleSets/virtualMachines",
        )
        for verb in POWER_OPERATIONS
    ]


# Activity Log retention. Source: Learn, azure-monitor/essentials/activity-log ("90 days").
ACTIVITY_LOG_RETENTION_DAYS: Final = 90

# Where a diagnostic setting keeps the Activity Log for longer (Learn: azure-monitor/essentials/
# activity-log, "Send to Log Analytics workspace" / "Send to Azure Storage"): the `AzureActivity`
# table of a Log Analytics workspace, or JSON blobs in the `insights-activity-logs` container,
# one per subscription and hour: `resourceId=/SUBSCRIPTIONS/<id>/y=YYYY/m=MM/d=DD/h=HH/m=00/
# PT1H.json`, one record per line (before November 2018 one `{"records": [...]}` document).
ACTIVITY_TABLE: Final = "AzureActivity"
ARCHIVE_CONTAINER: Final = "insights-activity-logs"

# --- Defender for Servers meters ------------------------------------------------------------
# Source: Azure Retail Prices API, serviceName "Microsoft Defender for Cloud", productName
# "Microsoft Defender for Servers", skuName "Standard P1"/"Standard P2", unitOfMeasure "1/Hour".
RETAIL_SERVICE_NAME: Final = "Microsoft Defender for Cloud"
RETAIL_PRODUCT_NAME: Final = "Microsoft Defender for Servers"
DEFENDER_METERS: Final = {"standard p1 node": "P1", "standard p2 node": "P2"}
DEFENDER_UNIT: Final = "1/Hour"
PLANS: Final = ("P1", "P2")
# Pricings API: subPlan of a Standard pricing "when not specified, full plan is applied"
# (Learn: REST defenderforcloud/pricings, PricingProperties.subPlan): the full plan is Plan 2.
STANDARD_DEFAULT_SUB_PLAN: Final = "P2"
# Meter categories seen over time (Security Center, Azure Defender, Microsoft Defender for Cloud)
# make service names useless for recognition: match the meter, or the FOCUS ChargeDescription.
DEFENDER_CHARGE_DESCRIPTION_PREFIX: Final = "microsoft defender for servers"

# Plan list prices as reported, USD per server-hour (the Retail Prices API is the truth; the
# price book in pricing/ carries the effective-dated figures). P1 4.906 / 730 h, P2 14.60 / 730 h.
LIST_PRICE_USD_PER_HOUR: Final = {"P1": 0.00672, "P2": 0.02}


def defender_plan(meter_name: str | None, charge_description: str | None = None) -> str | None:
    """The Defender for Servers plan (P1/P2) a cost row is for, or None if it is not one."""
    if meter_name:
        plan = DEFENDER_METERS.get(meter_name.strip().lower())
        if plan:
            return plan
    if charge_description and charge_description.strip().lower().startswith(
        DEFENDER_CHARGE_DESCRIPTION_PREFIX
    ):
        for plan in PLANS:
            if f"plan {plan[1]}" in charge_description.lower() or plan in charge_description:
                return plan
    return None


# --- Resource ids ---------------------------------------------------------------------------
# Resource ids differ in case between APIs (Compute returns `resourceGroups/RG-A`, Cost
# Management `resourcegroups/rg-a`): mdecost stores every id lower-cased in `resource_id`.
def normalise_resource_id(resource_id: str | None) -> str | None:
    """Lower-case and strip a trailing slash, so ids from every API compare equal."""
    if resource_id is None:
        return None
    stripped = resource_id.strip().rstrip("/")
    return stripped.lower() if stripped else None


def normalise_resource_id_expr(resource_id: pl.Expr) -> pl.Expr:
    """`normalise_resource_id` for a whole polars string column at once (the same rule)."""
    stripped = resource_id.str.strip_chars().str.strip_chars_end("/")
    return pl.when(stripped.str.len_chars() > 0).then(stripped.str.to_lowercase())


# Defender charges on the subscription's plan rather than a machine (seen in real cost data).
SUBSCRIPTION_PRICING_ID: Final = re.compile(
    r"^/subscriptions/(?P<subscription_id>[0-9a-f-]{36})/providers/microsoft\.security/"
    r"pricings/virtualmachines$"
)


def subscription_pricing_id(subscription_id: str) -> str:
    """The lower-cased subscription-level Defender for Servers pricing id of a subscription."""
    return (
        f"/subscriptions/{subscription_id.lower()}/providers/microsoft.security/"
        "pricings/virtualmachines"
    )


def is_subscription_pricing_id(resource_id: str | None) -> bool:
    """True for `/subscriptions/{id}/providers/Microsoft.Security/pricings/VirtualMachines`."""
    normalised = normalise_resource_id(resource_id)
    return bool(normalised and SUBSCRIPTION_PRICING_ID.match(normalised))


# --- MDE sensor -----------------------------------------------------------------------------
# Source: Learn, defender-for-cloud/integration-defender-for-endpoint: the extension types are
# MDE.Windows and MDE.Linux from publisher Microsoft.Azure.AzureDefenderForServers.
MDE_EXTENSION_PUBLISHER: Final = "Microsoft.Azure.AzureDefenderForServers"
MDE_EXTENSION_TYPES: Final = frozenset({"MDE.Windows", "MDE.Linux"})

# --- Seat licensing -------------------------------------------------------------------------
# Per-seat options for servers are priced per server per month, not per hour (Microsoft
# licensing: Defender for Endpoint for Servers, Defender for Business servers). Holders of such
# seats who also run Defender for Servers pay twice; the MDE part can be discounted through a
# support ticket from the approval date, not backdated (Defender for Servers FAQ).
SEAT_OPTIONS: Final = ("mde_for_servers", "defender_business_servers")
HOURLY_OPTIONS: Final = {"P1": "defender_servers_p1", "P2": "defender_servers_p2"}

# Partial hours: unconfirmed by Microsoft. VM compute is billed per minute (Learn: virtual-
# machines/vm-usage). Default: fractional hours; "round each started clock hour up" is a setting.
PARTIAL_HOURS_DEFAULT: Final = "fractional"
PARTIAL_HOURS_MODES: Final = ("fractional", "round_up_clock_hour")
