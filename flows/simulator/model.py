"""The building blocks of a simulated estate: subscriptions, machines and their true power timeline.

A machine's timeline is driven by operations, exactly as Azure drives it: an operation starts,
spends a few seconds or minutes in a transitional state (`starting`, `deallocating`, ...), then
succeeds (the machine reaches the target state) or fails (it falls back to where it was). Every
operation writes its Activity Log events as it goes (Started, Accepted for long operations,
Succeeded or Failed, one correlationId), so the true timeline and the events are consistent by
construction; a shutdown from inside the guest OS changes the state and writes nothing, as in Azure.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal, NamedTuple

import polars as pl

TIMESTAMP = pl.Datetime("us", "UTC")
MICROSECONDS_PER_HOUR = 3_600_000_000

# Transitional and target state of each operation. `restart` and a configuration `write` keep
# the machine allocated and running throughout: their interval stays `running` (billable).
_TRANSITIONS: dict[str, tuple[str | None, str | None]] = {
    "start": ("starting", "running"),
    "deallocate": ("deallocating", "deallocated"),
    "power_off": ("stopping", "stopped"),
    "restart": (None, "running"),
    "create": ("creating", "running"),
    "update": (None, None),
    "delete": ("deleting", None),
}
# States an operation may be requested from (Azure refuses the others with a conflict).
_ALLOWED_FROM: dict[str, frozenset[str]] = {
    "start": frozenset({"deallocated", "stopped"}),
    "deallocate": frozenset({"running", "stopped"}),
    "power_off": frozenset({"running"}),
    "restart": frozenset({"running"}),
    "update": frozenset({"running", "stopped", "deallocated"}),
    "delete": frozenset({"running", "stopped", "deallocated"}),
}
# Azure's spelling of each operation, after `Microsoft.Compute/virtualMachines/` (or the scale-set
# VM type), and the HTTP method the caller used.
_OPERATION_SUFFIX = {
    "start": ("start/action", "POST"),
    "deallocate": ("deallocate/action", "POST"),
    "power_off": ("powerOff/action", "POST"),
    "restart": ("restart/action", "POST"),
    "create": ("write", "PUT"),
    "update": ("write", "PUT"),
    "delete": ("delete", "DELETE"),
}
# Long-running operations log `Accepted` (HTTP 202) between Started and the outcome; a PUT answers
# 200/201 directly and logs no Accepted event.
_LOGS_ACCEPTED = frozenset({"start", "deallocate", "power_off", "restart", "delete"})

ARC_TYPE = "Microsoft.HybridCompute/machines"
# What Hybrid Compute's `cloudMetadata.provider` says for each provider (`billing.PROVIDERS`).
ARC_CLOUD_NAMES = {"on_premises": "N/A", "aws": "AWS", "gcp": "GCP"}
VM_TYPE = "Microsoft.Compute/virtualMachines"
VMSS_TYPE = "Microsoft.Compute/virtualMachineScaleSets"
VMSS_VM_TYPE = "Microsoft.Compute/virtualMachineScaleSets/virtualMachines"


@dataclass(frozen=True)
class SubscriptionSpec:
    """A subscription, its Defender for Servers plan and how its charges show in cost data.

    `defender_plan` is in force from `enablement_time` on; before it the subscription is Free.
    The 30-day free trial starts at the first enablement: `first_enablement_time`, or
    `enablement_time` when this is the first one. `cost_lag` delays every cost row of the
    subscription (pay-as-you-go cost data arrives up to 72 hours late, EA/MCA 8-24 hours).
    """

    subscription_id: str
    display_name: str
    defender_plan: str | None  # "P1", "P2", or None when Defender for Servers is off
    location: str
    # Defender rows carry the machine's id, or the subscription's pricing id (both seen in Azure).
    charge_target: Literal["machine", "subscription"] = "machine"
    # MeterCategory of the Defender rows: Azure renamed it over time.
    meter_category: str = "Microsoft Defender for Cloud"
    # How Cost Management spells resource ids: all lower-case, or keywords only lower-cased.
    cost_id_case: Literal["lower", "provider_lower"] = "lower"
    enablement_time: datetime | None = None
    first_enablement_time: datetime | None = None
    cost_lag: timedelta = timedelta(0)


@dataclass(frozen=True)
class ScaleSetSpec:
    subscription: SubscriptionSpec
    resource_group: str
    name: str
    size: str
    os_type: str
    location: str
    created_at: datetime
    unique_id: str
    tags: dict[str, str] = field(default_factory=dict)
    # A scale-set-level Defender plan ("P1" or "Free") its instances inherit; None: the
    # subscription's.
    pricing_override: str | None = None

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription.subscription_id}/resourceGroups/"
            f"{self.resource_group}/providers/Microsoft.Compute/virtualMachineScaleSets/{self.name}"
        )


@dataclass(frozen=True)
class MachineSpec:
    """A VM or a scale-set instance (each instance is a machine of its own)."""

    subscription: SubscriptionSpec
    resource_group: str
    name: str
    vm_id: str
    os_type: str  # "Windows" or "Linux"
    size: str
    location: str
    profile: str
    mde_sensor: bool
    created_at: datetime
    tags: dict[str, str] = field(default_factory=dict)
    # Resource-level Defender plan: None inherits the subscription's (or its scale set's), "P1"
    # enables Plan 1 on this machine, "Free" disables Defender for Servers on it. The override
    # is removed at `override_until` (from then on the machine inherits).
    pricing_override: str | None = None
    override_until: datetime | None = None
    scale_set: ScaleSetSpec | None = None
    instance_id: str | None = None
    extra_extensions: tuple[str, ...] = ()
    # Defender for Endpoint benefit approved (support ticket) from this instant: billed on the
    # "... - MDATP Benefit" meter from then on, never backdated.
    mde_benefit_from: datetime | None = None
    # The machine this one was moved from (another subscription, same vmId); this resource id
    # exists from the move on.
    moved_from: MachineSpec | None = None
    # An Azure Arc machine (`Microsoft.HybridCompute/machines`) and where it runs: on_premises,
    # aws or gcp (billing.PROVIDERS); None for a VM or scale-set instance. An Arc machine has no
    # size and no compute or disk cost rows.
    arc_provider: str | None = None

    @property
    def kind(self) -> str:
        if self.arc_provider:
            return "arc"
        return "vmss_instance" if self.scale_set else "vm"

    @property
    def provider(self) -> str:
        return self.arc_provider or "azure"

    @property
    def machine_name(self) -> str:
        """Azure's `name`: the VM name, or `{scaleSet}_{instanceId}` for a scale-set instance."""
        return f"{self.scale_set.name}_{self.instance_id}" if self.scale_set else self.name

    @property
    def resource_type(self) -> str:
        if self.arc_provider:
            return ARC_TYPE
        return VMSS_VM_TYPE if self.scale_set else VM_TYPE

    @property
    def arm_id(self) -> str:
        if self.scale_set:
            return f"{self.scale_set.arm_id}/virtualMachines/{self.instance_id}"
        return (
            f"/subscriptions/{self.subscription.subscription_id}/resourceGroups/"
            f"{self.resource_group}/providers/{self.resource_type}/{self.name}"
        )


@dataclass(frozen=True)
class ConnectorSpec:
    """A Defender for Cloud multicloud connector (`Microsoft.Security/securityConnectors`): an
    AWS account or GCP project whose instances it auto-provisions as Arc machines, with the
    Defender for Servers plan its offering sets."""

    subscription: SubscriptionSpec
    resource_group: str
    name: str
    cloud: str  # "aws" or "gcp"
    hierarchy_identifier: str  # the AWS account id or GCP project number
    plan: str
    created_at: datetime

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription.subscription_id}/resourceGroups/"
            f"{self.resource_group}/providers/Microsoft.Security/securityConnectors/{self.name}"
        )


@dataclass(frozen=True)
class OtherCharge:
    """Defender for Servers billed on an id that is not a collected machine, some days: a
    connector's id, or a server onboarded directly through Defender for Endpoint (its name, not
    an ARM id). `resource_id` is the id as cost data carries it."""

    subscription: SubscriptionSpec
    resource_id: str
    resource_type: str
    resource_group: str
    plan: str
    days: tuple[date, ...]
    hours_per_day: float


@dataclass(frozen=True)
class WorkspaceCharge:
    """Defender for Servers charged on a Log Analytics workspace (not a machine), some days."""

    subscription: SubscriptionSpec
    resource_group: str
    name: str
    plan: str
    days: tuple[date, ...]
    hours_per_day: float

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription.subscription_id}/resourceGroups/"
            f"{self.resource_group}/providers/Microsoft.OperationalInsights/workspaces/{self.name}"
        )

    @property
    def resource_id(self) -> str:
        return self.arm_id

    @property
    def resource_type(self) -> str:
        return "microsoft.operationalinsights/workspaces"


@dataclass(frozen=True)
class Anomaly:
    """A deliberate billing error in the cost data, for the pipeline's findings to discover."""

    finding: str  # "billed_while_not_billable" or "billable_not_billed"
    machine: MachineSpec
    usage_date: date
    billed_hours: float  # hours on the Defender row as billed (0 when the row is missing)


class Interval(NamedTuple):
    state: str
    start_at: datetime
    end_at: datetime


class Event(NamedTuple):
    event_data_id: str
    correlation_id: str
    event_at: datetime
    submission_at: datetime
    operation: str  # mdecost's verb: start, deallocate, power_off, restart, write, delete
    operation_name: str
    http_method: str
    status: str
    sub_status: str
    caller: str
    client_request_id: str


class OperationRefused(ValueError):
    """An operation was requested from a state Azure would refuse it in, or overlaps another."""


class MachineTimeline:
    """The true power timeline of one machine, advanced by operations in time order."""

    def __init__(
        self,
        machine: MachineSpec,
        rng: random.Random,
        *,
        observed_from: datetime,
        initial_state: str | None,
    ) -> None:
        self.machine = machine
        self._rng = rng
        self._state = initial_state
        self._since = observed_from
        self._busy_until = observed_from
        self.intervals: list[Interval] = []
        self.events: list[Event] = []
        self.deleted_at: datetime | None = None  # gone: deleted, or moved out (moved_out_at)
        self.moved_out_at: datetime | None = None

    @property
    def state(self) -> str | None:
        """The steady state now (None before creation and after deletion)."""
        return self._state

    @property
    def free_at(self) -> datetime:
        """The earliest instant the next operation may start (the last one has finished)."""
        return self._busy_until

    def create(self, at: datetime, duration: timedelta, caller: str) -> None:
        if self._state is not None or self.intervals:
            raise OperationRefused(f"{self.machine.arm_id} already exists")
        self._since = at
        self._state = "creating"
        self._record("create", at, duration, succeeded=True, caller=caller)

    def operate(
        self,
        operation: str,
        at: datetime,
        duration: timedelta,
        *,
        caller: str,
        succeeded: bool = True,
    ) -> None:
        """Run `operation` from `at`; it finishes `duration` later, succeeded or failed."""
        if self._state not in _ALLOWED_FROM[operation]:
            raise OperationRefused(
                f"{operation} refused for {self.machine.arm_id} in state {self._state}"
            )
        self._record(operation, at, duration, succeeded=succeeded, caller=caller)

    def guest_shutdown(self, at: datetime) -> None:
        """Shut down from inside the guest OS: stopped but still allocated, and no event."""
        if self._state != "running" or at < self._busy_until:
            raise OperationRefused(f"guest shutdown refused for {self.machine.arm_id}")
        self._move_to("stopped", at)
        self._busy_until = at

    def onboard(self, at: datetime, duration: timedelta, caller: str) -> None:
        """An Arc machine onboarded at `at`: the agent's registration is a Hybrid Compute
        `write` (Started, Succeeded), Connected once it succeeds."""
        if self.machine.arc_provider is None:
            raise OperationRefused(f"{self.machine.arm_id} is not an Arc machine")
        self.create(at, duration, caller)

    def offboard(self, at: datetime, duration: timedelta, caller: str) -> None:
        """An Arc machine removed at `at` (`azcmagent disconnect`): a Hybrid Compute `delete`;
        gone once it succeeds."""
        if self._state is None or at < self._busy_until or self.machine.arc_provider is None:
            raise OperationRefused(f"offboarding refused for {self.machine.arm_id}")
        self._record("delete", at, duration, succeeded=True, caller=caller)

    def arc_status(self, status: str, at: datetime) -> None:
        """An Arc machine's agent status changes (heartbeats stop or resume, 45 days without
        one expire it): the Activity Log logs nothing."""
        if self._state is None or at < self._busy_until or self.machine.arc_provider is None:
            raise OperationRefused(f"status {status} refused for {self.machine.arm_id}")
        self._move_to(status, at)
        self._busy_until = at

    def move_out(self, at: datetime) -> None:
        """Moved to another subscription at `at`: this resource id ends, and the Compute
        provider logs no power event (the move is a `Microsoft.Resources` operation)."""
        if self._state is None or at < self._busy_until:
            raise OperationRefused(f"move refused for {self.machine.arm_id}")
        self._move_to(None, at)
        self.deleted_at = at
        self.moved_out_at = at
        self._busy_until = at

    def follow_scale_set(self, operation: str, at: datetime, duration: timedelta) -> None:
        """Take part in an operation on the whole scale set: the instance changes state as its
        own operation would, but the events are the set's (see `scale_set_operation_events`)."""
        if self._state not in _ALLOWED_FROM[operation] or at < self._busy_until:
            raise OperationRefused(
                f"{operation} of the scale set refused for {self.machine.arm_id} "
                f"in state {self._state}"
            )
        self._transition(operation, at, duration, succeeded=True)

    def close(self, until: datetime) -> None:
        """End the observed timeline at `until` (the simulation's present)."""
        if self._state is not None and until > self._since:
            self.intervals.append(Interval(self._state, self._since, until))
        self._since = until

    # -- internals ---------------------------------------------------------------------------
    def _record(
        self, operation: str, at: datetime, duration: timedelta, *, succeeded: bool, caller: str
    ) -> None:
        if at < self._busy_until:
            raise OperationRefused(
                f"{operation} at {at} overlaps the previous operation on {self.machine.arm_id}"
            )
        if operation == "create" and not succeeded:
            raise OperationRefused("a failed create leaves no machine; do not simulate it")
        self._transition(operation, at, duration, succeeded=succeeded)
        self.events.extend(
            operation_events(
                self._rng,
                f"{self.machine.resource_type}/{_OPERATION_SUFFIX[operation][0]}",
                operation,
                at,
                at + duration,
                succeeded=succeeded,
                caller=caller,
            )
        )

    def _transition(
        self, operation: str, at: datetime, duration: timedelta, *, succeeded: bool
    ) -> None:
        transitional, target = _TRANSITIONS[operation]
        if target == "running" and self.machine.arc_provider:
            target = "connected"  # an Arc machine's counterpart of running
        finished_at = at + duration
        previous = self._state
        if transitional is not None:
            self._move_to(transitional, at)
        final_state = target if succeeded and operation != "update" else previous
        if operation == "delete" and succeeded:
            self._move_to(None, finished_at)
            self.deleted_at = finished_at
        else:
            self._move_to(final_state, finished_at)
        self._busy_until = finished_at

    def _move_to(self, state: str | None, at: datetime) -> None:
        if state == self._state:
            return
        if self._state is not None and at > self._since:
            self.intervals.append(Interval(self._state, self._since, at))
        self._state = state
        self._since = at


def operation_events(
    rng: random.Random,
    operation_name: str,
    operation: str,
    at: datetime,
    finished_at: datetime,
    *,
    succeeded: bool,
    caller: str,
) -> list[Event]:
    """The Activity Log events of one operation: Started, Accepted (long-running operations),
    then Succeeded or Failed, under one correlationId."""
    _, method = _OPERATION_SUFFIX[operation]
    verb = "write" if operation in ("create", "update") else operation
    correlation_id = _uuid(rng)
    client_request_id = _uuid(rng)
    steps: list[tuple[str, datetime, str]] = [("Started", at, "")]
    if operation in _LOGS_ACCEPTED:
        accepted_at = at + timedelta(microseconds=rng.randint(300_000, 2_000_000))
        steps.append(("Accepted", min(accepted_at, finished_at), "Accepted"))
    if succeeded:
        steps.append(("Succeeded", finished_at, "Created" if operation == "create" else "OK"))
    else:
        steps.append(("Failed", finished_at, "InternalServerError"))
    return [
        Event(
            event_data_id=_uuid(rng),
            correlation_id=correlation_id,
            event_at=event_at,
            submission_at=event_at + timedelta(microseconds=rng.randint(4, 90) * 1_000_000),
            operation=verb,
            operation_name=operation_name,
            http_method=method,
            status=status,
            sub_status=sub_status,
            caller=caller,
            client_request_id=client_request_id,
        )
        for status, event_at, sub_status in steps
    ]


def scale_set_operation_name(operation: str) -> str:
    """Azure's operationName of `operation` run on a whole scale set (logged on the set)."""
    return f"{VMSS_TYPE}/{_OPERATION_SUFFIX[operation][0]}"


_VERSION_MASK = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_4 = (0x4000 << 64) | (0x8000 << 48)


def _uuid(rng: random.Random) -> str:
    """`str(uuid.UUID(int=rng.getrandbits(128), version=4))`, formatted directly: an estate
    draws hundreds of thousands of them."""
    digits = f"{(rng.getrandbits(128) & _VERSION_MASK) | _VERSION_4:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def seeded_uuid(rng: random.Random) -> str:
    """A version-4 GUID drawn from `rng`, so ids are reproducible from the seed."""
    return _uuid(rng)
