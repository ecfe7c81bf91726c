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
# Disconnected or Expired". The Hybrid Compute API reports `properties.status` Connected,
# Disconnected, Error or Expired (REST spec Microsoft.HybridCompute/machines, StatusTypes): an
# agent is Disconnected after 15-30 minutes without a heartbeat and Expired after 45 days
# (Learn: azure-arc/servers/overview, "Agent status"). Error is not Connected: not billable.
ARC_STATES: Final = ("connected", "disconnected", "offline", "error", "expired")
ARC_BILLABLE_STATES: Final = frozenset({"connected"})
# The status an Arc machine is taken to have had before its first `lastStatusChange` when no
# earlier evidence says (documented in the data dictionary): Disconnected and Error follow a
# connection; Expired follows `ARC_EXPIRY` Disconnected, itself after a connection. A change to
# Connected follows a disconnection of unknown length, taken as none (as between two snapshots:
# a status that began and ended unseen is not counted), so Connected holds backwards.
ARC_STATUS_BEFORE: Final = {
    "connected": "connected",
    "disconnected": "connected",
    "offline": "connected",
    "error": "connected",
    "expired": "disconnected",
}
# Source: Learn, azure-arc/servers/overview ("Agent status"): a machine Disconnected for 45 days
# is Expired. An Expired status that began at T was Disconnected from T - 45 days.
ARC_EXPIRY_DAYS: Final = 45
ARC_EXPIRED: Final = "expired"
ARC_DISCONNECTED: Final = "disconnected"
# The Arc machine's counterpart of a VM's `running` (its state once onboarded, and the state
# assumed for one known only from events).
ARC_CONNECTED: Final = "connected"

# Where each server runs (`machines.provider`). Azure VMs and scale-set instances run in Azure;
# an Arc machine's `properties.cloudMetadata.provider` (else `detectedProperties.cloudprovider`)
# says AWS, GCP, or N/A (on premises, or a cloud the agent did not recognise). AWS EC2 and GCP
# instances onboarded through a Defender for Cloud multicloud connector are Arc machines
# (auto-provisioned) and billed as such (Learn: defender-for-cloud/quickstart-onboard-aws,
# quickstart-onboard-gcp; BILLING-FACTS "Azure Arc").
PROVIDERS: Final = ("azure", "on_premises", "aws", "gcp")
ARC_PROVIDER_NAMES: Final = {"aws": "aws", "gcp": "gcp", "azure": "azure"}
ARC_DEFAULT_PROVIDER: Final = "on_premises"

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
# Operations on a whole scale set, logged on the set's id, act on its instances (Learn:
# resource-provider-operations#microsoftcompute: virtualMachineScaleSets/start/action "Starts the
# instances of the Virtual Machine Scale Set", deallocate/action, powerOff/action,
# restart/action, delete/action "Deletes the instances", delete "Deletes the Virtual Machine
# Scale Set"). A set's `write` changes its model, not its instances' power, and is not collected.
_SCALE_SET_OPERATION_VERBS: Final = {
    "start/action": "start",
    "deallocate/action": "deallocate",
    "poweroff/action": "power_off",
    "restart/action": "restart",
    "delete/action": "delete",
    "delete": "delete",
}
_MACHINE_RESOURCE_TYPES: Final = (
    "microsoft.compute/virtualmachinescalesets/virtualmachines",
    "microsoft.compute/virtualmachines",
)
# An Azure Arc machine's registration (`write`, when the agent connects it) and removal
# (`delete`) are its only Activity Log operations (Learn: resource-provider-operations#
# microsofthybridcompute); its status changes log nothing (no heartbeats).
ARC_RESOURCE_TYPE: Final = "microsoft.hybridcompute/machines"
_ARC_OPERATION_VERBS: Final = {"write": "write", "delete": "delete"}
# The resource providers whose Activity Log events mdecost reads (`resourceProvider eq` takes
# one at a time).
EVENT_RESOURCE_PROVIDERS: Final = ("Microsoft.Compute", "Microsoft.HybridCompute")
SCALE_SET_RESOURCE_TYPE: Final = "microsoft.compute/virtualmachinescalesets"
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

    Machine operations (a VM, a scale-set instance), the power operations of a whole scale
    set (`_SCALE_SET_OPERATION_VERBS`, which act on its instances) and an Arc machine's `write`
    and `delete` count; a scale set's `write` and every other provider return None.
    """
    lowered = operation_name.lower()
    for resource_type in _MACHINE_RESOURCE_TYPES:
        prefix = resource_type + "/"
        if lowered.startswith(prefix):
            return _OPERATION_VERBS.get(lowered[len(prefix) :])
    prefix = SCALE_SET_RESOURCE_TYPE + "/"
    if lowered.startswith(prefix):
        return _SCALE_SET_OPERATION_VERBS.get(lowered[len(prefix) :])
    prefix = ARC_RESOURCE_TYPE + "/"
    if lowered.startswith(prefix):
        return _ARC_OPERATION_VERBS.get(lowered[len(prefix) :])
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
SCALE_SET_OPERATION_PATHS: Final = (
    "start/action",
    "deallocate/action",
    "powerOff/action",
    "restart/action",
    "delete/action",
    "delete",
)


def power_operation_names() -> list[str]:
    """Every Activity Log operationName mdecost collects, in Azure's own spelling."""
    machine_operations = [
        f"{base}/{OPERATION_PATHS[verb]}"
        for base in (
            "Microsoft.Compute/virtualMachines",
            "Microsoft.Compute/virtualMachineScaleSets/virtualMachines",
        )
        for verb in POWER_OPERATIONS
    ]
    scale_set_operations = [
        f"Microsoft.Compute/virtualMachineScaleSets/{path}" for path in SCALE_SET_OPERATION_PATHS
    ]
    arc_operations = [f"Microsoft.HybridCompute/machines/{verb}" for verb in _ARC_OPERATION_VERBS]
    return machine_operations + scale_set_operations + arc_operations


# Activity Log retention. Source: Learn, azure-monitor/essentials/activity-log ("90 days").
ACTIVITY_LOG_RETENTION_DAYS: Final = 90

# Where a diagnostic setting keeps the Activity Log for longer (Learn: azure-monitor/essentials/
# activity-log, "Send to Log Analytics workspace" / "Send to Azure Storage"): the `AzureActivity`
# table of a Log Analytics workspace, or JSON blobs in the `insights-activity-logs` container,
# one per subscription and hour: `resourceId=/SUBSCRIPTIONS/<id>/y=YYYY/m=MM/d=DD/h=HH/m=00/
# PT1H.json`, one record per line (before November 2018 one `{"records": [...]}` document).
ACTIVITY_TABLE: Final = "AzureActivity"
ARCHIVE_CONTAINER: Final = "insights-activity-logs"

# --- Cost Management Query API quota ------------------------------------------------------
# Quotas are per tenant, in query processing units (QPU): 12 per 10 seconds, 60 per minute, 600
# per hour, and a query of one month of data costs about one QPU whatever its scope (Learn:
# cost-management-billing/costs/manage-automation, "Data latency and rate limits"). Answers say
# what they cost and what is left: `x-ms-ratelimit-microsoft.costmanagement-qpu-consumed` (a
# number) and `-qpu-remaining` (comma-separated `name:number` pairs, one per window; the names
# are not documented, so a pair is matched to its window by the unit in its name: seconds,
# minute, hour). A `ClientType` header gets its own bucket of the same size.
QPU_WINDOWS: Final = ((10.0, 12), (60.0, 60), (3600.0, 600))
QPU_PER_MONTH_QUERIED: Final = 1
QPU_CONSUMED_HEADER: Final = "x-ms-ratelimit-microsoft.costmanagement-qpu-consumed"
QPU_REMAINING_HEADER: Final = "x-ms-ratelimit-microsoft.costmanagement-qpu-remaining"
# Scopes a query may be asked at (Learn: REST cost-management query/usage, `scope`): a billing
# account (EA enrollment) or an MCA billing profile covers every subscription billed to it; a
# management group only for EA and pay-as-you-go, and at most 3,000 subscriptions under it
# (Learn: cost-management-billing/costs/understand-work-scopes).
MANAGEMENT_GROUP_MAX_SUBSCRIPTIONS: Final = 3000

# --- Defender for Servers meters ------------------------------------------------------------
# Source: Azure Retail Prices API, serviceName "Microsoft Defender for Cloud", productName
# "Microsoft Defender for Servers", skuName "Standard P1"/"Standard P2", unitOfMeasure "1/Hour".
RETAIL_SERVICE_NAME: Final = "Microsoft Defender for Cloud"
RETAIL_PRODUCT_NAME: Final = "Microsoft Defender for Servers"
# The standard meters' names (all of one length: `charges.defender_plan_expr` relies on it).
DEFENDER_METERS: Final = {"standard p1 node": "P1", "standard p2 node": "P2"}
# Every Defender for Servers meter starts with its plan's standard meter name; what follows
# " - " names a variant. Seen in cost data: "Standard P2 Node - MDATP Benefit", the Defender for
# Endpoint for Servers benefit a licence holder obtains by support ticket, from the approval date,
# not backdated (Defender for Servers FAQ; BILLING-FACTS "Defender for Servers"). A variant's
# `benefit` is its key here, else the variant's own text, so no variant is mistaken for the
# standard meter.
DEFENDER_METER_PATTERN: Final = r"^standard (p[12]) node(?:\s*-\s*(.*\S))?$"
DEFENDER_METER_VARIANTS: Final = {"mdatp benefit": "mde"}
MDE_BENEFIT: Final = "mde"
MDE_BENEFIT_METER_SUFFIX: Final = " - MDATP Benefit"
DEFENDER_UNIT: Final = "1/Hour"
PLANS: Final = ("P1", "P2")
# The Cost Management Query API filters dimensions with `In` only (exact values, compared without
# case; Learn: REST cost-management query/usage, QueryComparisonExpression.operator), so a query
# for Defender for Servers rows lists every meter spelling recognised above: each plan's standard
# meter and its known variants. A variant Microsoft adds later would be missed by the filtered
# query (`[collect] cost_rows = "all"` asks for every row); export files are read whole.
DEFENDER_QUERY_METERS: Final = tuple(
    f"Standard {plan} Node{suffix}" for plan in PLANS for suffix in ("", MDE_BENEFIT_METER_SUFFIX)
)
# `[collect] cost_rows`: Defender for Servers rows only (the default), or every cost row.
COST_ROWS: Final = ("defender", "all")
# Pricings API: subPlan of a Standard pricing "when not specified, full plan is applied"
# (Learn: REST defenderforcloud/pricings, PricingProperties.subPlan): the full plan is Plan 2.
STANDARD_DEFAULT_SUB_PLAN: Final = "P2"
# Meter categories seen over time (Security Center, Azure Defender, Microsoft Defender for Cloud)
# make service names useless for recognition: match the meter, or the FOCUS ChargeDescription.
DEFENDER_CHARGE_DESCRIPTION_PREFIX: Final = "microsoft defender for servers"

# Free trial: "the first 30 days" of a subscription's first enablement are free; the pricings
# API reports `freeTrialRemainingTime` (ISO 8601 duration) beside `enablementTime` (Learn: REST
# defenderforcloud/pricings; Defender for Cloud pricing page). Trial days are covered and cost 0.
FREE_TRIAL_DAYS: Final = 30

# Plan list prices as reported, USD per server-hour (the Retail Prices API is the truth; the
# price book in pricing/ carries the effective-dated figures). P1 4.906 / 730 h, P2 14.60 / 730 h.
LIST_PRICE_USD_PER_HOUR: Final = {"P1": 0.00672, "P2": 0.02}


def defender_meter(meter_name: str | None) -> tuple[str | None, str | None]:
    """(plan, benefit) of a Defender for Servers meter name, (None, None) if it is not one.

    `benefit` is None for the standard meter, `MDE_BENEFIT` for "... - MDATP Benefit", and the
    variant's lower-cased text for any other variant.
    """
    if not meter_name:
        return None, None
    match = re.match(DEFENDER_METER_PATTERN, meter_name.strip().lower())
    if not match:
        return None, None
    plan, variant = match.group(1).upper(), match.group(2)
    return plan, (DEFENDER_METER_VARIANTS.get(variant, variant) if variant else None)


def defender_plan(meter_name: str | None, charge_description: str | None = None) -> str | None:
    """The Defender for Servers plan (P1/P2) a cost row is for, or None if it is not one."""
    plan, _ = defender_meter(meter_name)
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


# Defender for Cloud multicloud connectors (`Microsoft.Security/securityConnectors`, REST spec
# 2023-10-01-preview): `properties.environmentName` AWS / GCP, and the Defender for Servers plan
# in `properties.offerings[]` of `offeringType` DefenderForServersAws / DefenderForServersGcp
# with its `subPlan` (P1 / P2). A charge on a connector's id is the connector's, never a machine's.
SECURITY_CONNECTOR_PATH: Final = "/providers/microsoft.security/securityconnectors/"
DEFENDER_FOR_SERVERS_OFFERINGS: Final = {
    "defenderforserversaws": "aws",
    "defenderforserversgcp": "gcp",
}
CONNECTOR_CLOUDS: Final = {"aws": "aws", "gcp": "gcp"}

# Servers onboarded directly through Defender for Endpoint, without Azure Arc (Learn:
# defender-for-cloud/onboard-machines-with-defender-for-endpoint): a tenant-level setting shows
# them "under a designated Azure Subscription you configure", which "is used for licensing,
# billing, alerts"; they are not ARM resources (no Policy, extensions or guest configuration).
# Learn does not document the resource id their cost rows carry. *Unconfirmed*, mdecost's rule:
# a Defender for Servers row whose resource id is not an ARM path (it does not start with
# `/subscriptions/`) names a directly onboarded device, by its MDE device id or its name; its
# money stays unattributed (`direct_onboarding`), never a machine. Servers onboarded through
# several methods may be charged twice ("Simultaneous onboarding limited support": devices on
# older Defender for Endpoint agents "could result in overcharges"; same page): the
# `duplicate_onboarding` finding matches such a device with an Arc machine of the same name
# (the first DNS label, without case) billed the same day.
DIRECT_ONBOARDING_MIN_AGENT_VERSIONS: Final = {
    "Windows Server 2019": "10.8555",
    "Windows Server 2012 R2, 2016 (modern unified agent)": "10.8560",
    "Linux": "30.101.23052.009",
}


def is_arm_id_expr(resource_id: pl.Expr) -> pl.Expr:
    """True for a (lower-cased) ARM resource id: it starts with `/subscriptions/`."""
    return resource_id.str.starts_with("/subscriptions/")


def device_name_expr(name: pl.Expr) -> pl.Expr:
    """The name a server is matched by across onboarding methods: the last path segment, its
    first DNS label, lower-cased (`/…/machines/SQL-01`, `sql-01.contoso.local` -> `sql-01`)."""
    return (
        name.str.strip_chars()
        .str.strip_chars_end("/")
        .str.extract(r"([^/]+)$", 1)
        .str.split(".")
        .list.first()
        .str.to_lowercase()
    )


# Why a Defender charge is where it is (`defender_charges_daily.attribution_detail`). A charge
# lands on a machine only when its id is one mdecost collected (or saw in the Activity Log): a VM,
# a scale-set instance, or an Arc machine. A machine id never collected is an `unknown_machine`,
# a connector's id a `connector`, a directly onboarded device `direct_onboarding`, and any other
# id (a Log Analytics workspace, another `Microsoft.Security` resource) is never a machine: its
# money stays unattributed, with the reason. The tests check the view's values against these
# keys (accepted values).
ATTRIBUTION_DETAILS: Final = {
    "machine": "resource: charged on the machine's own id",
    "subscription_pricing": "allocated: a share of the subscription-level charge",
    "scale_set": "allocated: a share of the scale set's charge",
    "no_covered_machine": "unattributed: no machine covered by the plan was billable that day",
    "unknown_machine": "unattributed: a VM, scale-set instance or Arc machine id mdecost never "
    "collected",
    "connector": "unattributed: a Defender for Cloud multicloud connector's id",
    "direct_onboarding": "unattributed: a server onboarded directly through Defender for "
    "Endpoint (not an ARM resource)",
    "non_machine_resource": "unattributed: an id that is not a machine",
    "no_resource_id": "unattributed: the row names no resource",
}


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

# --- Like for like: what each plan includes beyond the MDE licence ---------------------------
# Source: Learn, defender-for-cloud/defender-for-servers-overview ("plans overview"): both plans
# include Defender for Endpoint Plan 2 for servers; Plan 1 adds little beyond it (Defender for
# Cloud's basics), Plan 2 adds premium vulnerability management, file integrity monitoring,
# just-in-time VM access, adaptive controls and 500 MB/day of free security-data ingestion
# (data-ingestion-benefit). Switching a machine to seats alone loses these.
LOST_WITHOUT_DEFENDER_FOR_SERVERS: Final = {
    "P1": "Defender for Cloud's server protection beyond the MDE licence (Plan 1's "
    "recommendations and integration)",
    "P2": "Plan 2's features beyond MDE: premium vulnerability management, file integrity "
    "monitoring, just-in-time VM access, adaptive controls and 500 MB/day of free "
    "Log Analytics ingestion",
}
# The MDE part of either plan has no published price. Without a better figure it is the Plan 1
# rate for both plans (Plan 1 is essentially the MDE licence); `[pricing.mde_component]` sets
# it per plan (an assumption the report states).
MDE_COMPONENT_DEFAULT_OPTION: Final = HOURLY_OPTIONS["P1"]
# Where Microsoft lists a plan's MDATP benefit meter (the plan's rate once the MDE part is
# discounted), the price book keeps it as its own hourly option and the MDE component is the
# difference: standard rate - benefit rate.
MDE_BENEFIT_OPTIONS: Final = {
    plan: f"{option}_mde_benefit" for plan, option in HOURLY_OPTIONS.items()
}

# --- Seat licensing terms -------------------------------------------------------------------
# A per-device licence may be reassigned to another server no more than once every 90 days
# (Microsoft Product Terms, as commonly read; a setting). Seats fixed per block of calendar
# months at least that long (90 days: calendar quarters) are a count a licence allows; the peak
# of machines billable in one hour is a lower bound no licence can reach.
SEAT_REASSIGNMENT_DAYS_DEFAULT: Final = 90
# Monthly-term seats cost more than annual ones (third-party reports: about 20%; a setting).
MONTHLY_TERM_UPLIFT_PERCENT_DEFAULT: Final = 20.0
# Defender for Business servers: at most 60 servers per tenant, and only with Defender for
# Business or Microsoft 365 Business Premium (Learn: defender-business/get-defender-business-
# servers). MDE for Servers: sold to holders of enough qualifying licences (reported minimum: 50
# combined E5 / MDE) and withdrawn from some channels (third-party reports).
DEFENDER_BUSINESS_SERVERS_MAX: Final = 60
SEAT_REQUIREMENTS: Final = {
    "mde_for_servers": "needs enough qualifying licences (reportedly at least 50 E5 / MDE) and "
    "a channel that still sells it",
    "defender_business_servers": "needs Defender for Business or Microsoft 365 Business "
    "Premium; at most 60 servers per tenant",
}
# The licensing answers (`licensing_options_monthly.option`, an accepted-values check in the
# tests keeps the view to these).
LICENSING_OPTIONS: Final = (
    "billed",
    "hourly_list",
    "seats_plus_hourly_remainder",
    "seats_only",
    "p1_instead_of_p2",
)

# Partial hours: unconfirmed by Microsoft. VM compute is billed per minute (Learn: virtual-
# machines/vm-usage). Default: fractional hours; "round each started clock hour up" is a setting.
PARTIAL_HOURS_DEFAULT: Final = "fractional"
PARTIAL_HOURS_MODES: Final = ("fractional", "round_up_clock_hour")
# How far a day's billed and observed hours may differ before it is a finding. Fractional
# hours: Cost Management rounds quantities (0.01 h, 36 s). Whole clock hours: a start or stop
# logged seconds either side of the hour moves a whole hour, so the rule's own unit is the
# tolerance.
FINDINGS_TOLERANCE_HOURS: Final = {"fractional": 0.01, "round_up_clock_hour": 1.0}
