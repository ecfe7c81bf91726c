"""Which Defender for Servers plan covers a machine at an instant, and what the pricings API says.

One place for the simulated estate's plan facts, derived from the specs alone (never from what
the server serves), used both by the server (pricings at a clock) and by the ground truth (the
plan in force per machine and day):
- A subscription is Free before its `enablement_time`, on `defender_plan` from it on.
- A machine's own resource-level setting wins (until `override_until`), then its scale set's,
  then the subscription's; "P1" at resource level enables Plan 1 even on a Free subscription
  (Learn: REST defenderforcloud/pricings, resource-level subPlan 'P1' only), "Free" disables.
- The free trial covers the 30 days from the subscription's first enablement
  (`billing.FREE_TRIAL_DAYS`); `freeTrialRemainingTime` counts down to "PT0S". A subscription
  never enabled reports the whole trial still ahead (mdecost's reading: the trial belongs to
  the subscription, not to an enablement).

Plans change at 00:00 UTC in the simulator so that each machine-day has one plan and one meter
(Azure may change a plan at any minute; that day then carries two meters).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import polars as pl

from flows.simulator.model import TIMESTAMP, MachineSpec, ScaleSetSpec, SubscriptionSpec
from transforms.billing import FREE_TRIAL_DAYS, MDE_BENEFIT

TRIAL = timedelta(days=FREE_TRIAL_DAYS)


@dataclass(frozen=True)
class Pricing:
    """`Microsoft.Security/pricings/VirtualMachines` at one scope and instant."""

    tier: str  # "Standard" or "Free"
    sub_plan: str | None
    enablement_time: datetime | None
    trial_remaining: timedelta
    inherited_from: str | None = None  # resource level: the scope it inherits from, if any


def subscription_plan_at(subscription: SubscriptionSpec, at: datetime) -> str | None:
    enabled = subscription.enablement_time
    if subscription.defender_plan and (enabled is None or enabled <= at):
        return subscription.defender_plan
    return None


def first_enablement(subscription: SubscriptionSpec) -> datetime | None:
    if subscription.defender_plan is None:
        return subscription.first_enablement_time
    return subscription.first_enablement_time or subscription.enablement_time


def trial_remaining(subscription: SubscriptionSpec, at: datetime) -> timedelta:
    """`freeTrialRemainingTime` at `at`: 30 days before the first enablement, then counting down."""
    first = first_enablement(subscription)
    if first is None or first > at:
        return TRIAL
    return max(timedelta(0), first + TRIAL - at)


def own_override_at(machine: MachineSpec, at: datetime) -> str | None:
    """The machine's own resource-level setting at `at` ("P1", "Free"), None if it inherits."""
    if machine.override_until is not None and at >= machine.override_until:
        return None
    return machine.pricing_override


def machine_plan_at(machine: MachineSpec, at: datetime) -> str | None:
    """The plan covering the machine at `at` ("P1", "P2"), None if Defender for Servers is off."""
    override = own_override_at(machine, at)
    if override is None and machine.scale_set is not None:
        override = machine.scale_set.pricing_override
    if override == "Free":
        return None
    if override == "P1":
        return "P1"
    return subscription_plan_at(machine.subscription, at)


def subscription_pricing(subscription: SubscriptionSpec, at: datetime) -> Pricing:
    plan = subscription_plan_at(subscription, at)
    return Pricing(
        tier="Standard" if plan else "Free",
        sub_plan=plan,
        enablement_time=subscription.enablement_time if plan else None,
        trial_remaining=trial_remaining(subscription, at),
    )


def resource_pricing(
    resource: MachineSpec | ScaleSetSpec, at: datetime, *, override_enabled_at: datetime
) -> Pricing:
    """The pricing read at a machine's or a scale set's id: its own setting (inherited
    "False", enabled at `override_enabled_at`), else inherited from its scale set, else from
    the subscription (`inheritedFrom` names the scope)."""
    subscription = resource.subscription
    own = own_override_at(resource, at) if isinstance(resource, MachineSpec) else None
    if own is None and isinstance(resource, ScaleSetSpec):
        own = resource.pricing_override
    if own is not None:
        return Pricing(
            tier="Free" if own == "Free" else "Standard",
            sub_plan=None if own == "Free" else own,
            enablement_time=None if own == "Free" else override_enabled_at,
            trial_remaining=timedelta(0),
            inherited_from=None,
        )
    scale_set = resource.scale_set if isinstance(resource, MachineSpec) else None
    if scale_set is not None and scale_set.pricing_override is not None:
        parent = resource_pricing(scale_set, at, override_enabled_at=override_enabled_at)
        return Pricing(
            parent.tier,
            parent.sub_plan,
            parent.enablement_time,
            parent.trial_remaining,
            inherited_from=scale_set.arm_id,
        )
    parent = subscription_pricing(subscription, at)
    return Pricing(
        parent.tier,
        parent.sub_plan,
        parent.enablement_time,
        parent.trial_remaining,
        inherited_from=f"/subscriptions/{subscription.subscription_id}",
    )


PRICING_SCHEMA: dict[str, pl.DataType] = {
    "subscription_id": pl.String(),
    "level": pl.String(),
    "resource_id": pl.String(),
    "pricing_tier": pl.String(),
    "sub_plan": pl.String(),
    "inherited": pl.Boolean(),
    "inherited_from": pl.String(),
    "enablement_time": TIMESTAMP,
    "free_trial_remaining": pl.Duration("us"),
}


def pricings_frame(
    subscriptions: list[SubscriptionSpec],
    resources: list[MachineSpec | ScaleSetSpec],
    at: datetime,
    *,
    override_enabled_at: datetime,
) -> pl.DataFrame:
    """The settings at `at` as rows: every subscription's, and each resource's that is not
    simply inherited from its subscription (ids lower-cased, like the `pricings` dataset)."""
    rows: list[tuple[str, str, str | None, Pricing]] = [
        (s.subscription_id, "subscription", None, subscription_pricing(s, at))
        for s in subscriptions
    ]
    for resource in resources:
        subscription_id = resource.subscription.subscription_id
        pricing = resource_pricing(resource, at, override_enabled_at=override_enabled_at)
        if pricing.inherited_from != f"/subscriptions/{subscription_id}":
            rows.append((subscription_id, "resource", resource.arm_id.lower(), pricing))
    return pl.DataFrame(
        [
            (
                subscription_id,
                level,
                resource_id,
                p.tier,
                p.sub_plan,
                None if level == "subscription" else p.inherited_from is not None,
                p.inherited_from.lower() if p.inherited_from else None,
                p.enablement_time,
                p.trial_remaining,
            )
            for subscription_id, level, resource_id, p in rows
        ],
        schema=PRICING_SCHEMA,
        orient="row",
    )


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _changes_within(machine: MachineSpec, start: datetime, end: datetime) -> list[datetime]:
    """The instants in (start, end) at which the machine's plan, trial or benefit may change."""
    subscription = machine.subscription
    first = first_enablement(subscription)
    candidates = [
        subscription.enablement_time,
        machine.override_until,
        machine.mde_benefit_from,
        first,
        first + TRIAL if first else None,
    ]
    changes = sorted({c for c in candidates if c is not None and start < c < end})
    for change in changes:
        if change != _midnight(change.date()):
            raise ValueError(f"{machine.arm_id}: plan changes must fall at 00:00 UTC, got {change}")
    return changes


PLAN_PERIOD_SCHEMA: dict[str, pl.DataType] = {
    "resource_id": pl.String(),
    "valid_from": pl.Date(),
    "plan": pl.String(),
    "trial": pl.Boolean(),
    "benefit": pl.String(),
}


def plan_periods(machines: list[MachineSpec], start: datetime, end: datetime) -> pl.DataFrame:
    """Per machine, each day from which its plan, trial state and benefit hold until the next
    row (one Python row per change, not per day; `join_asof` spreads them over the days)."""
    rows: dict[str, list] = {name: [] for name in PLAN_PERIOD_SCHEMA}
    for machine in machines:
        subscription = machine.subscription
        first = first_enablement(subscription)
        for at in [start, *_changes_within(machine, start, end)]:
            plan = machine_plan_at(machine, at)
            benefit = machine.mde_benefit_from is not None and machine.mde_benefit_from <= at
            rows["resource_id"].append(machine.arm_id.lower())
            rows["valid_from"].append(at.date())
            rows["plan"].append(plan)
            rows["trial"].append(
                plan is not None and first is not None and first <= at < first + TRIAL
            )
            rows["benefit"].append(MDE_BENEFIT if plan and benefit else None)
    return pl.DataFrame(rows, schema=PLAN_PERIOD_SCHEMA).sort("resource_id", "valid_from")
