"""The billing cases of issue 11, placed in a generated estate so the demo and the tests meet them.

Dates are relative to the estate's `now`, inside the last complete calendar month (the demo's
report month) except the trial, which starts 10 days before `now`. A case whose date falls outside
the observed window is left out (a one-month window may not reach back to day 16). Every plan
change is at 00:00 UTC (see `plans`). The cases:
1. plan change: a Shared Services machine's resource-level P1 is removed on day 16 (P2 after);
2. enablement: Sandbox, Free since an old trial, enables Plan 1 on day 20 (no trial left);
3. free trial: Analytics enables Plan 2 for the first time 10 days before `now`;
4. MDE benefit: 3 Production VMs billed on "Standard P2 Node - MDATP Benefit" from day 18;
5. a Log Analytics workspace billed for Defender for Servers (Plan 2) on days 23-27;
6. Shared Services' cost data arrives 3 days late;
7. a Dev/Test machine (charged at subscription level) set to Free at resource level;
8. Production's scale set set to Plan 1 at scale-set level (on a Plan 2 subscription);
9. a Production VM moved to Shared Services at 00:00 on day 22 (its move day is billed under
   Production with its new id);
10. the same scale set deallocated as a whole on the evening of day 24 (or the next free day)
    and started the next morning, logged only on the set;
11. Azure Arc (issue 14), all in Production: on-premises servers (one disconnected from day 12
    02:00 to day 13 10:00, one without the MDE extension, one disconnected 3 days into the window
    and Expired 45 days later, one removed on day 26 14:00 by a Hybrid Compute delete), an AWS EC2
    instance onboarded (a Hybrid Compute write) on day 5 09:30 and a GCP instance
    disconnected from day 19 20:00 to day 20 08:00, both through Defender for Cloud connectors
    (an AWS and a GCP connector with the Plan 2 offering); 3 h a day billed on the AWS
    connector's id on days 23-24; two servers billed as directly onboarded through Defender for
    Endpoint on days 8-10 (their names, not ARM ids), one of them the same server as the first
    Arc machine (billed twice: the duplicate_onboarding case);
12. a cost anomaly: a Shared Services workspace billed for Plan 2 for servers reporting to it
    (none of them in the inventory) on every day of the month, so the subscription's billed
    cost jumps without its billable hours moving (a `cost_anomaly`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

from flows.simulator.estate import EstateBuilder
from flows.simulator.model import (
    ConnectorSpec,
    MachineSpec,
    MachineTimeline,
    OtherCharge,
    ScaleSetSpec,
    SubscriptionSpec,
    WorkspaceCharge,
    seeded_uuid,
)

PLAN_CHANGE_DAY = 16
BENEFIT_APPROVAL_DAY = 18
ENABLEMENT_DAY = 20
MOVE_DAY = 22
WORKSPACE_DAYS = range(23, 28)
SCALE_SET_DEALLOCATE_DAYS = range(24, 29)
TRIAL_STARTED_DAYS_AGO = 10
COST_LAG = timedelta(days=3)
BENEFIT_MACHINES = 3
WORKSPACE_HOURS_PER_DAY = 48.0  # two servers reporting to the workspace around the clock
UNEXPECTED_SERVERS = 12  # case 12: servers billed through a workspace all month


def last_complete_month(now: datetime) -> date:
    """The first day of the calendar month before `now`'s."""
    return (now.date().replace(day=1) - timedelta(days=1)).replace(day=1)


def _days_in(month: date) -> int:
    following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return (following - timedelta(days=1)).day


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


@dataclass(frozen=True)
class CaseDates:
    """When each case happens in an estate observed over `[window_start, now)`."""

    plan_change: datetime | None
    benefit_approval: datetime | None
    enablement: datetime | None
    move: datetime | None
    workspace_days: tuple[date, ...]
    whole_month: tuple[date, ...]
    scale_set_days: tuple[date, ...]
    trial_start: datetime | None

    @classmethod
    def of(cls, window_start: datetime, now: datetime) -> CaseDates:
        month = last_complete_month(now)

        def observed(day: date) -> bool:
            # The day before is observed too, so a change is visible as one.
            return window_start < _midnight(day) and _midnight(day) + timedelta(days=1) < now

        def instant(day_of_month: int) -> datetime | None:
            day = month.replace(day=day_of_month)
            return _midnight(day) if observed(day) else None

        def days(days_of_month: range) -> tuple[date, ...]:
            return tuple(
                month.replace(day=d) for d in days_of_month if observed(month.replace(day=d))
            )

        trial_day = now.date() - timedelta(days=TRIAL_STARTED_DAYS_AGO)
        return cls(
            plan_change=instant(PLAN_CHANGE_DAY),
            benefit_approval=instant(BENEFIT_APPROVAL_DAY),
            enablement=instant(ENABLEMENT_DAY),
            move=instant(MOVE_DAY),
            workspace_days=days(WORKSPACE_DAYS),
            whole_month=days(range(1, _days_in(month) + 1)),
            scale_set_days=days(SCALE_SET_DEALLOCATE_DAYS),
            trial_start=_midnight(trial_day) if observed(trial_day) else None,
        )


def enabled_mid_month(subscription: SubscriptionSpec, dates: CaseDates) -> SubscriptionSpec:
    """Case 2: Free in the window until Plan 1 is enabled on `dates.enablement`; its trial was
    used years ago, so the enablement is billed from its first day."""
    if dates.enablement is None:
        return subscription
    return replace(
        subscription,
        defender_plan="P1",
        enablement_time=dates.enablement,
        first_enablement_time=dates.enablement - timedelta(days=900),
    )


def in_trial(subscription: SubscriptionSpec, dates: CaseDates) -> SubscriptionSpec:
    """Case 3: the subscription's first enablement starts its 30-day free trial."""
    if dates.trial_start is None:
        return replace(subscription, defender_plan=None, enablement_time=None)
    return replace(subscription, enablement_time=dates.trial_start)


def lagging(subscription: SubscriptionSpec) -> SubscriptionSpec:
    """Case 6: pay-as-you-go cost data up to 72 hours late."""
    return replace(subscription, cost_lag=COST_LAG)


def move(
    builder: EstateBuilder,
    machine: MachineSpec,
    to: SubscriptionSpec,
    resource_group: str,
    at: datetime,
) -> MachineTimeline:
    """Case 9: `machine` runs in its subscription until `at`, then (same vmId, new id) in `to`.

    A move logs no Compute power event; the returned timeline (the new id, running) is the one
    the caller schedules from `at` on.
    """
    before = builder.add_machine(machine, initial_state="running")
    before.move_out(at)
    moved = replace(
        machine,
        subscription=to,
        resource_group=resource_group,
        location=to.location,
        created_at=at,
        pricing_override=None,
        override_until=None,
        mde_benefit_from=None,
        moved_from=machine,
    )
    return builder.add_machine(moved, initial_state="running")


def workspace_charge(
    builder: EstateBuilder, subscription: SubscriptionSpec, resource_group: str, dates: CaseDates
) -> None:
    """Case 5: Plan 2 billed on a Log Analytics workspace (servers reporting to it)."""
    if dates.workspace_days:
        builder.add_workspace_charge(
            WorkspaceCharge(
                subscription=subscription,
                resource_group=resource_group,
                name=f"log-{subscription.subscription_id[:8]}-security",
                plan="P2",
                days=dates.workspace_days,
                hours_per_day=WORKSPACE_HOURS_PER_DAY,
            )
        )


def unexpected_charges(
    builder: EstateBuilder, subscription: SubscriptionSpec, resource_group: str, dates: CaseDates
) -> None:
    """Case 12: Plan 2 billed on a workspace for `UNEXPECTED_SERVERS` servers around the clock
    all month: charges without uptime, which the month's cost anomaly must show."""
    if dates.whole_month:
        builder.add_workspace_charge(
            WorkspaceCharge(
                subscription=subscription,
                resource_group=resource_group,
                name=f"log-{subscription.subscription_id[:8]}-direct-onboarding",
                plan="P2",
                days=dates.whole_month,
                hours_per_day=24.0 * UNEXPECTED_SERVERS,
            )
        )


def deallocate_scale_set(
    builder: EstateBuilder,
    scale_set: ScaleSetSpec,
    dates: CaseDates,
    rng: random.Random,
    caller: str,
) -> None:
    """Case 10: deallocate the whole set at about 20:00 and start it at about 07:00 the next
    day, on the first candidate day no instance is being created or deleted around."""
    instances = [t for t in builder.timelines if t.machine.scale_set is scale_set]
    for day in dates.scale_set_days:
        evening = _midnight(day) + timedelta(hours=20, seconds=rng.randint(0, 1800))
        morning = _midnight(day + timedelta(days=1)) + timedelta(
            hours=7, seconds=rng.randint(0, 1800)
        )
        busy = any(
            t.free_at > evening and t.machine.created_at <= morning + timedelta(hours=1)
            for t in instances
        )
        if busy:
            continue
        deallocating = timedelta(seconds=rng.randint(90, 240))
        starting = timedelta(seconds=rng.randint(45, 150))
        builder.operate_scale_set(scale_set, "deallocate", evening, deallocating, caller=caller)
        builder.operate_scale_set(scale_set, "start", morning, starting, caller=caller)
        return


ARC_RESOURCE_GROUPS = {"on_premises": "rg-arc-onprem", "aws": "rg-arc-aws", "gcp": "rg-arc-gcp"}
ARC_EXPIRY = timedelta(days=45)
CONNECTOR_CHARGE_DAYS = range(23, 25)
CONNECTOR_HOURS_PER_DAY = 3.0
DIRECT_ONBOARDING_DAYS = range(8, 11)
# The Arc machine also billed as a directly onboarded server, and one billed only that way.
DUPLICATED_SERVER = "SQL-OnPrem-01"
DIRECT_ONLY_SERVER = "BRANCH-FS-01"
# Who registers the instances a connector auto-provisions (Defender for Cloud's application).
ARC_PROVISIONING = "defender-for-cloud-arc-autoprovisioning"


def arc_estate(builder: EstateBuilder, subscription: SubscriptionSpec, rng: random.Random) -> None:
    """Case 11: Arc machines on premises, in AWS and in GCP (connectors), a charge on a connector
    and servers billed as directly onboarded through Defender for Endpoint. Each disconnection
    spans a midnight, so daily snapshots see it (one that began and ended between two snapshots
    would be invisible to them: see `power_intervals.state` in the data dictionary)."""
    start, now = builder.window_start, builder.now
    month = last_complete_month(now)

    def instant(day: int, hours: float = 0) -> datetime | None:
        moment = _midnight(month.replace(day=day)) + timedelta(hours=hours)
        return moment if start < moment and moment + timedelta(days=1) < now else None

    def days(days_of_month: range) -> tuple[date, ...]:
        return tuple(month.replace(day=d) for d in days_of_month if instant(d) is not None)

    existing_since = start - timedelta(days=200)

    def arc(name: str, provider: str, os_type: str, *, mde: bool = True) -> MachineSpec:
        return MachineSpec(
            subscription=subscription,
            resource_group=ARC_RESOURCE_GROUPS[provider],
            name=name,
            vm_id=seeded_uuid(rng),
            os_type=os_type,
            size="",
            location=subscription.location,
            profile="arc",
            mde_sensor=mde,
            created_at=existing_since,
            tags={"environment": "prod", "owner": "platform", "onboarding": "arc"},
            arc_provider=provider,
        )

    connectors = [
        builder.add_connector(
            ConnectorSpec(subscription, "rg-clouds", name, cloud, account, "P2", existing_since)
        )
        for name, cloud, account in (
            ("aws-contoso-prod", "aws", "123456789012"),
            ("gcp-contoso-web", "gcp", "987654321098"),
        )
    ]
    sql = builder.add_machine(
        arc(DUPLICATED_SERVER, "on_premises", "Windows"), initial_state="connected"
    )
    lost, back = instant(12, 2), instant(13, 10)
    if lost and back:
        sql.arc_status("disconnected", lost)
        sql.arc_status("connected", back)
    builder.add_machine(
        arc("Files-OnPrem-02", "on_premises", "Linux", mde=False), initial_state="connected"
    )
    legacy = builder.add_machine(
        arc("Legacy-OnPrem-03", "on_premises", "Windows"), initial_state="connected"
    )
    unplugged = start + timedelta(days=3, hours=9)
    if unplugged < now:
        legacy.arc_status("disconnected", unplugged)
        if unplugged + ARC_EXPIRY < now:
            legacy.arc_status("expired", unplugged + ARC_EXPIRY)
    onboarded = instant(5, 9.5)
    if onboarded:
        ec2 = replace(arc("i-0a1b2c3d4e5f60718", "aws", "Linux"), created_at=onboarded)
        builder.add_machine(ec2, initial_state=None).onboard(
            onboarded, timedelta(seconds=40), ARC_PROVISIONING
        )
    decommissioned = builder.add_machine(
        arc("Decom-OnPrem-04", "on_premises", "Linux"), initial_state="connected"
    )
    removed = instant(26, 14)
    if removed:
        decommissioned.offboard(removed, timedelta(seconds=20), "carol@contoso.com")
    gcp = builder.add_machine(arc("gcp-web-01", "gcp", "Linux"), initial_state="connected")
    lost, back = instant(19, 20), instant(20, 8)
    if lost and back:
        gcp.arc_status("disconnected", lost)
        gcp.arc_status("connected", back)

    aws = connectors[0]
    if days(CONNECTOR_CHARGE_DAYS):
        builder.add_other_charge(
            OtherCharge(
                subscription=subscription,
                resource_id=aws.arm_id,
                resource_type="microsoft.security/securityconnectors",
                resource_group=aws.resource_group,
                plan="P2",
                days=days(CONNECTOR_CHARGE_DAYS),
                hours_per_day=CONNECTOR_HOURS_PER_DAY,
            )
        )
    for server in (DUPLICATED_SERVER, DIRECT_ONLY_SERVER):
        if days(DIRECT_ONBOARDING_DAYS):
            builder.add_other_charge(
                OtherCharge(
                    subscription=subscription,
                    resource_id=f"{server}.contoso.local",
                    resource_type="",
                    resource_group="",
                    plan="P2",
                    days=days(DIRECT_ONBOARDING_DAYS),
                    hours_per_day=24.0,
                )
            )
