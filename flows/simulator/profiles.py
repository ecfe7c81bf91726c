"""How the machines of a generated estate behave: one schedule per machine profile.

Profiles (the `profile` column of `Estate.machines()`):
- `always_on`: production, running all window; a restart or a configuration write now and then,
  sometimes a night-time maintenance deallocation.
- `business_hours`: dev/test, started on weekday mornings and deallocated in the evening, so
  deallocated at night and all weekend; now and then a start fails and is retried.
- `business_hours_power_off`: the same, but stopped with powerOff on Friday evenings, so it stays
  allocated (and billable) all weekend.
- `batch`: started at night for a few hours, then deallocated.
- `guest_os_stopped`: shut down from inside the guest OS now and then (stopped, still allocated,
  billable, and no Activity Log event), later deallocated or started again.
- `short_lived`: created and deleted within the window (write and delete events).
- `scale_set`: scale-set instances; two run all window, the others come and go (write, delete).

The billing cases of issue 11 (plan changes, a trial, the MDE benefit, a move, ...) are placed
by `flows.simulator.cases`.

Everything is drawn from one `random.Random(seed)` in a fixed order, so a seed is an estate.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

from flows.simulator import cases
from flows.simulator.catalog import VM_SIZES
from flows.simulator.estate import Estate, EstateBuilder
from flows.simulator.model import (
    Anomaly,
    MachineSpec,
    MachineTimeline,
    OperationRefused,
    ScaleSetSpec,
    SubscriptionSpec,
    seeded_uuid,
)
from flows.simulator.plans import machine_plan_at

# display name, plan, location, where Defender charges land, MeterCategory, id spelling, groups
_SUBSCRIPTIONS = (
    (
        "Contoso Production",
        "P2",
        "westeurope",
        "machine",
        "Microsoft Defender for Cloud",
        "lower",
        ("RG-Prod-Web", "rg-prod-data"),
    ),
    (
        "Contoso Dev/Test",
        "P1",
        "northeurope",
        "subscription",
        "Azure Defender",
        "lower",
        ("Rg-DevTest", "rg-devtest-Batch"),
    ),
    (
        "Contoso Shared Services",
        "P2",
        "eastus",
        "machine",
        "Microsoft Defender for Cloud",
        "provider_lower",
        ("RG-Shared-Infra", "rg-shared-tools"),
    ),
    ("Contoso Sandbox", None, "uksouth", "machine", "Azure Defender", "lower", ("RG-Sandbox",)),
    (
        "Contoso Analytics",
        "P2",
        "northeurope",
        "machine",
        "Microsoft Defender for Cloud",
        "lower",
        ("rg-analytics",),
    ),
)
PRODUCTION, DEVTEST, SHARED, SANDBOX, ANALYTICS = range(5)

# Share of the machines in each profile, and the subscriptions they are spread over in turn.
_PROFILES = {
    "always_on": (0.28, (PRODUCTION, SHARED, PRODUCTION, SANDBOX, ANALYTICS)),
    "business_hours": (0.20, (DEVTEST, SHARED, SANDBOX, DEVTEST)),
    "scale_set": (0.20, ()),
    "batch": (0.10, (DEVTEST, SHARED)),
    "short_lived": (0.10, (DEVTEST, SANDBOX, PRODUCTION)),
    "guest_os_stopped": (0.07, (PRODUCTION, SHARED, SANDBOX)),
    "business_hours_power_off": (0.05, (SHARED, DEVTEST)),
}
_NAME_PREFIXES = {
    "always_on": ("web-prod", "SQL-Prod", "app-prod", "dc", "Files-Prod"),
    "business_hours": ("dev-app", "Test-Web", "uat-api"),
    "business_hours_power_off": ("Dev-Build",),
    "batch": ("batch-etl", "Report-Batch"),
    "guest_os_stopped": ("jump", "Legacy-App"),
    "short_lived": ("tmp-build", "poc-ml", "Demo"),
}
_ENVIRONMENT = {
    PRODUCTION: "prod",
    DEVTEST: "dev",
    SHARED: "shared",
    SANDBOX: "sandbox",
    ANALYTICS: "analytics",
}
_TEAMS = ("platform", "payments", "data", "web")
_COST_CENTRES = ("CC-1001", "CC-2002", "CC-3003")
# Resource groups' tags (Cost Management's tag inheritance gives them to machines without their
# own): Production's web group and Analytics' group carry a cost centre.
_GROUP_TAGS = {
    (PRODUCTION, 0): {"CostCenter": "CC-4004", "environment": "prod"},
    (ANALYTICS, 0): {"CostCenter": "CC-5005"},
}
SCHEDULER = "4c1f5e4a-3d8b-4a52-9a53-6f1e9e7d2a10"  # an automation account's app id
AUTOSCALE = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"  # the autoscale service principal
PEOPLE = ("alice@contoso.com", "bob@contoso.com", "carol@contoso.com")
_FAILED_START_RATE = 0.03


def window_start_for(now: datetime, months: int) -> datetime:
    """Midnight UTC, `months` calendar months before `now` (day clamped to the month's end)."""
    month_index = now.year * 12 + (now.month - 1) - months
    year, month = divmod(month_index, 12)
    month += 1
    next_month = date(year + (month == 12), month % 12 + 1, 1)
    last_day = (next_month - timedelta(days=1)).day
    return datetime.combine(date(year, month, min(now.day, last_day)), time(), tzinfo=UTC)


def profile_counts(machines: int) -> dict[str, int]:
    """How many machines of each profile: every profile once the estate is big enough."""
    names = list(_PROFILES)
    if machines < len(names):
        return {name: int(index < machines) for index, name in enumerate(names)}
    counts = {name: max(1, int(share * machines)) for name, (share, _) in _PROFILES.items()}
    counts["always_on"] += machines - sum(counts.values())
    return counts


def generate_estate(*, seed: int, machines: int, months: int, now: datetime) -> Estate:
    if machines < 1:
        raise ValueError(f"machines must be at least 1, got {machines}")
    if months < 1:
        raise ValueError(f"months must be at least 1, got {months}")
    if now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware (UTC), got {now!r}")
    now = now.astimezone(UTC)
    builder = EstateBuilder(seed=seed, window_start=window_start_for(now, months), now=now)
    _Generator(builder).populate(profile_counts(machines))
    return builder.build()


class _Generator:
    def __init__(self, builder: EstateBuilder) -> None:
        self.builder = builder
        self.rng = builder.rng
        self.now = builder.now
        self.start = builder.window_start
        self.dates = cases.CaseDates.of(self.start, self.now)
        self.subscriptions: list[SubscriptionSpec] = []
        self.resource_groups: list[tuple[str, ...]] = []
        billing_case = {
            SANDBOX: lambda s: cases.enabled_mid_month(s, self.dates),
            ANALYTICS: lambda s: cases.in_trial(s, self.dates),
            SHARED: cases.lagging,
        }
        for index, (name, plan, location, target, category, case, groups) in enumerate(
            _SUBSCRIPTIONS
        ):
            subscription = SubscriptionSpec(
                subscription_id=seeded_uuid(self.rng),
                display_name=name,
                defender_plan=plan,
                location=location,
                charge_target=target,  # type: ignore[arg-type]
                meter_category=category,
                cost_id_case=case,  # type: ignore[arg-type]
                enablement_time=self.start - timedelta(days=400) if plan else None,
            )
            subscription = billing_case.get(index, lambda s: s)(subscription)
            self.subscriptions.append(builder.add_subscription(subscription))
            self.resource_groups.append(groups)
            for group_index, group in enumerate(groups):
                if tags := _GROUP_TAGS.get((index, group_index)):
                    builder.tag_resource_group(subscription, group, tags)
        self.serial = 0
        self.defender_machines = 0
        self.unprotected_machines = 0
        self.shared_machines = 0
        self.devtest_machines = 0
        self.production_always_on = 0
        self.failure_forced = False

    # -- machines ------------------------------------------------------------------------------
    def populate(self, counts: dict[str, int]) -> None:
        for profile, count in counts.items():
            if profile == "scale_set":
                self._scale_sets(count)
                continue
            spread = _PROFILES[profile][1]
            for index in range(count):
                subscription_index = spread[index % len(spread)]
                self._vm(profile, subscription_index)
        self._anomalies()
        production = self.subscriptions[PRODUCTION]
        cases.workspace_charge(
            self.builder, production, self.resource_groups[PRODUCTION][1], self.dates
        )
        cases.unexpected_charges(
            self.builder, self.subscriptions[SHARED], self.resource_groups[SHARED][1], self.dates
        )
        if self.builder.scale_sets:
            cases.deallocate_scale_set(
                self.builder, self.builder.scale_sets[0], self.dates, self.rng, PEOPLE[0]
            )
        cases.arc_estate(self.builder, production, self.rng)

    def _days(self, seconds_low: float, seconds_high: float) -> timedelta:
        return timedelta(
            microseconds=self.rng.randint(int(seconds_low * 1e6), int(seconds_high * 1e6))
        )

    def _minutes(self, low: float, high: float) -> timedelta:
        return self._days(low * 60, high * 60)

    def _new_spec(
        self, profile: str, subscription_index: int, *, created_at: datetime
    ) -> MachineSpec:
        rng = self.rng
        subscription = self.subscriptions[subscription_index]
        groups = self.resource_groups[subscription_index]
        self.serial += 1
        prefix = rng.choice(_NAME_PREFIXES[profile])
        os_type = "Windows" if rng.random() < 0.4 else "Linux"
        override = None
        override_until = None
        if subscription_index == SHARED:
            # Resource-level plans on a Plan 2 subscription: Plan 1 here, disabled ("Free") there.
            override = {0: "P1", 4: "Free"}.get(self.shared_machines % 6)
            if self.shared_machines == 0:
                override_until = self.dates.plan_change  # case 1: P1 until day 16, then P2
            self.shared_machines += 1
        elif subscription_index == DEVTEST:
            # Case 7: Free at resource level under the subscription-level charge.
            override = "Free" if self.devtest_machines == 0 else None
            self.devtest_machines += 1
        return MachineSpec(
            subscription=subscription,
            resource_group=groups[self.serial % len(groups)],
            name=f"{prefix}-{self.serial:02d}",
            vm_id=seeded_uuid(rng),
            os_type=os_type,
            size=rng.choice(sorted(VM_SIZES)),
            location=subscription.location,
            profile=profile,
            mde_sensor=self._mde_sensor(subscription, override),
            created_at=created_at,
            tags=self._tags(subscription_index),
            pricing_override=override,
            override_until=override_until,
            extra_extensions=self._extensions(os_type),
        )

    def _tags(self, subscription_index: int) -> dict[str, str]:
        """A VM's tags: its environment, an owning team and, for three in four, a cost centre
        (the others inherit their resource group's, or are untagged for showback)."""
        tags = {"environment": _ENVIRONMENT[subscription_index], "owner": self.rng.choice(_TEAMS)}
        draw = self.rng.randint(1000, 9999)
        if draw % 4:
            tags["costCenter"] = _COST_CENTRES[draw % len(_COST_CENTRES)]
        return tags

    def _mde_sensor(self, subscription: SubscriptionSpec, override: str | None) -> bool:
        # Most protected machines run the MDE sensor, one in seven does not; a third of the
        # unprotected ones run it anyway (per-seat MDE licences).
        if subscription.defender_plan and override != "Free":
            self.defender_machines += 1
            return self.defender_machines % 7 != 3
        self.unprotected_machines += 1
        return self.unprotected_machines % 3 == 1

    def _extensions(self, os_type: str) -> tuple[str, ...]:
        extensions = []
        if self.rng.random() < 0.8:
            extensions.append(
                "AzureMonitorWindowsAgent" if os_type == "Windows" else "AzureMonitorLinuxAgent"
            )
        if os_type == "Windows" and self.rng.random() < 0.3:
            extensions.append("IaaSAntimalware")
        return tuple(extensions)

    def _existing_since(self) -> datetime:
        return self.start - self._days(20 * 86400, 700 * 86400)

    def _vm(self, profile: str, subscription_index: int) -> None:
        if profile == "short_lived":
            span = (self.now - self.start).total_seconds()
            created_at = self.start + self._days(86400, max(86400 * 1.5, span - 6 * 86400))
            spec = self._new_spec(profile, subscription_index, created_at=created_at)
            timeline = self.builder.add_machine(spec, initial_state=None)
            self._short_lived(timeline)
            return
        initial = "running" if profile in ("always_on", "guest_os_stopped") else "deallocated"
        spec = self._new_spec(profile, subscription_index, created_at=self._existing_since())
        case = self._production_case(spec) if profile == "always_on" else None
        timeline = case or self.builder.add_machine(spec, initial_state=initial)
        schedule = {
            "always_on": self._always_on,
            "business_hours": self._business_hours,
            "business_hours_power_off": self._business_hours,
            "batch": self._batch,
            "guest_os_stopped": self._guest_os_stopped,
        }[profile]
        schedule(timeline)

    def _production_case(self, spec: MachineSpec) -> MachineTimeline | None:
        """Cases 4 and 9 on Production's always-on VMs: the first ones get the MDE benefit, the
        next one is moved to Shared Services (returns the moved machine's timeline)."""
        if spec.subscription is not self.subscriptions[PRODUCTION]:
            return None
        self.production_always_on += 1
        if self.production_always_on <= cases.BENEFIT_MACHINES:
            if self.dates.benefit_approval is None:
                return None
            spec = replace(spec, mde_benefit_from=self.dates.benefit_approval)
            return self.builder.add_machine(spec, initial_state="running")
        if self.production_always_on == cases.BENEFIT_MACHINES + 1 and self.dates.move:
            return cases.move(
                self.builder,
                spec,
                self.subscriptions[SHARED],
                self.resource_groups[SHARED][0],
                self.dates.move,
            )
        return None

    # -- schedules -----------------------------------------------------------------------------
    def _operate(
        self,
        timeline: MachineTimeline,
        operation: str,
        at: datetime,
        duration: timedelta,
        *,
        caller: str,
        succeeded: bool = True,
    ) -> bool:
        """Run an operation if it finishes before `now` and Azure would accept it now."""
        if at + duration >= self.now or at < timeline.free_at:
            return False
        try:
            timeline.operate(operation, at, duration, caller=caller, succeeded=succeeded)
        except OperationRefused:
            return False
        return True

    def _each_day(self):
        day = self.start.date()
        while day <= self.now.date():
            yield day, datetime.combine(day, time(), tzinfo=UTC)
            day += timedelta(days=1)

    def _always_on(self, timeline: MachineTimeline) -> None:
        rng = self.rng
        at = self.start + self._days(86400, 20 * 86400)
        while at < self.now:
            roll = rng.random()
            if roll < 0.3:
                # Night-time maintenance: deallocated for a few hours, then started again.
                night = datetime.combine(at.date(), time(1, 30), tzinfo=UTC) + self._minutes(0, 60)
                if self._operate(
                    timeline, "deallocate", night, self._days(60, 240), caller=rng.choice(PEOPLE)
                ):
                    back = timeline.free_at + self._minutes(60, 300)
                    self._operate(
                        timeline, "start", back, self._days(30, 150), caller=rng.choice(PEOPLE)
                    )
            elif roll < 0.55:
                self._operate(timeline, "update", at, self._days(5, 20), caller=rng.choice(PEOPLE))
            else:
                self._operate(
                    timeline, "restart", at, self._days(40, 120), caller=rng.choice(PEOPLE)
                )
            at += self._days(10 * 86400, 30 * 86400)

    def _business_hours(self, timeline: MachineTimeline) -> None:
        rng = self.rng
        power_off_fridays = timeline.machine.profile == "business_hours_power_off"
        for day, midnight in self._each_day():
            if day.weekday() >= 5 or rng.random() < 0.04:
                continue
            morning = midnight + timedelta(hours=6, minutes=45) + self._minutes(0, 90)
            fail = rng.random() < _FAILED_START_RATE or (
                not self.failure_forced and day.weekday() == 2
            )
            if fail and self._operate(
                timeline, "start", morning, self._days(60, 200), caller=SCHEDULER, succeeded=False
            ):
                # A failed start leaves the machine deallocated; the scheduler retries.
                self.failure_forced = True
                morning = timeline.free_at + self._minutes(3, 15)
            self._operate(timeline, "start", morning, self._days(30, 150), caller=SCHEDULER)
            evening = midnight + timedelta(hours=17, minutes=30) + self._minutes(0, 150)
            if power_off_fridays and day.weekday() == 4:
                self._operate(timeline, "power_off", evening, self._days(20, 90), caller=SCHEDULER)
            else:
                self._operate(
                    timeline, "deallocate", evening, self._days(60, 240), caller=SCHEDULER
                )

    def _batch(self, timeline: MachineTimeline) -> None:
        rng = self.rng
        for _day, midnight in self._each_day():
            if rng.random() < 0.1:
                continue
            at = midnight + timedelta(hours=1) + self._minutes(0, 60)
            if self._operate(timeline, "start", at, self._days(30, 150), caller=SCHEDULER):
                done = timeline.free_at + self._minutes(120, 300)
                self._operate(timeline, "deallocate", done, self._days(60, 240), caller=SCHEDULER)

    def _guest_os_stopped(self, timeline: MachineTimeline) -> None:
        rng = self.rng
        at = self.start + self._days(2 * 86400, 12 * 86400)
        while at < self.now:
            if timeline.state != "running" or at < timeline.free_at:
                break
            timeline.guest_shutdown(at)
            later = at + self._days(86400, 6 * 86400)
            if rng.random() < 0.6:
                if not self._operate(
                    timeline, "deallocate", later, self._days(60, 240), caller=rng.choice(PEOPLE)
                ):
                    break
                later = timeline.free_at + self._days(86400, 4 * 86400)
            if not self._operate(
                timeline, "start", later, self._days(30, 150), caller=rng.choice(PEOPLE)
            ):
                break
            at = timeline.free_at + self._days(5 * 86400, 20 * 86400)

    def _short_lived(self, timeline: MachineTimeline) -> None:
        rng = self.rng
        caller = rng.choice(PEOPLE)
        created_at = timeline.machine.created_at
        timeline.create(created_at, self._days(90, 300), caller=caller)
        end = timeline.free_at + self._days(2 * 86400, 20 * 86400)
        if rng.random() < 0.5:
            cleanup = end - self._minutes(30, 90)
            self._operate(timeline, "deallocate", cleanup, self._days(60, 240), caller=caller)
        self._operate(
            timeline,
            "delete",
            max(end, timeline.free_at + self._minutes(5, 10)),
            self._days(60, 180),
            caller=caller,
        )

    def _scale_sets(self, count: int) -> None:
        if count == 0:
            return
        homes = ((PRODUCTION, "vmss-web"), (DEVTEST, "VMSS-Build"))
        per_set = [count] if count < 6 else [count - count // 2, count // 2]
        for (subscription_index, name), instances in zip(homes, per_set, strict=False):
            subscription = self.subscriptions[subscription_index]
            os_type = "Linux" if subscription_index == PRODUCTION else "Windows"
            scale_set = self.builder.add_scale_set(
                ScaleSetSpec(
                    subscription=subscription,
                    resource_group=self.resource_groups[subscription_index][0],
                    name=name,
                    size="Standard_D2s_v5",
                    os_type=os_type,
                    location=subscription.location,
                    created_at=self.start - timedelta(days=120),
                    unique_id=seeded_uuid(self.rng),
                    tags={"environment": _ENVIRONMENT[subscription_index], "owner": "platform"},
                    # Case 8: Plan 1 set on the scale set, in a Plan 2 subscription.
                    pricing_override="P1" if subscription_index == PRODUCTION else None,
                )
            )
            self._instances(scale_set, subscription_index, instances)

    def _instances(self, scale_set: ScaleSetSpec, subscription_index: int, count: int) -> None:
        rng = self.rng
        base = min(2, count)
        scale_outs = count - base
        span = self.now - self.start
        for instance in range(count):
            if instance < base:
                created_at = scale_set.created_at + timedelta(minutes=5 * instance)
            else:
                slot = instance - base + 1
                created_at = self.start + span * slot / (scale_outs + 1) + self._minutes(0, 720)
            spec = MachineSpec(
                subscription=scale_set.subscription,
                resource_group=scale_set.resource_group,
                name=scale_set.name,
                vm_id=seeded_uuid(rng),
                os_type=scale_set.os_type,
                size=scale_set.size,
                location=scale_set.location,
                profile="scale_set",
                mde_sensor=self._mde_sensor(scale_set.subscription, None),
                created_at=created_at,
                tags=dict(scale_set.tags),
                scale_set=scale_set,
                instance_id=str(instance),
                extra_extensions=self._extensions(scale_set.os_type),
            )
            if instance < base:
                self.builder.add_machine(spec, initial_state="running")
                continue
            timeline = self.builder.add_machine(spec, initial_state=None)
            timeline.create(created_at, self._days(90, 240), caller=AUTOSCALE)
            scale_in = timeline.free_at + self._minutes(6 * 60, 72 * 60)
            self._operate(timeline, "delete", scale_in, self._days(60, 180), caller=AUTOSCALE)

    # -- deliberate billing errors ---------------------------------------------------------------
    def _anomalies(self) -> None:
        """A weekend day billed for a deallocated machine, and a running day not billed."""
        middle = self.start + (self.now - self.start) / 2
        sunday = middle.date() + timedelta(days=(6 - middle.weekday()) % 7)
        weekday = middle.date() + timedelta(days=(2 - middle.weekday()) % 7)

        def covered(m: MachineSpec, day: date) -> bool:
            return machine_plan_at(m, datetime.combine(day, time(), tzinfo=UTC)) is not None

        for timeline in self.builder.timelines:
            m = timeline.machine
            if (
                covered(m, sunday)
                and m.subscription.charge_target == "machine"
                and m.profile == "business_hours"
            ):
                self.builder.add_anomaly(Anomaly("billed_while_not_billable", m, sunday, 24.0))
                break
        for timeline in self.builder.timelines:
            m = timeline.machine
            if (
                covered(m, weekday)
                and m.subscription.charge_target == "machine"
                and m.profile == "always_on"
                and m.created_at < datetime.combine(weekday, time(), tzinfo=UTC)
            ):
                self.builder.add_anomaly(Anomaly("billable_not_billed", m, weekday, 0.0))
                break
