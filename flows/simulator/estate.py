"""The simulated estate and its ground truth, as polars frames.

Ground truth is computed directly from each machine's true timeline and specs, never from what
the server serves: the pipeline rebuilds uptime from the Activity Log events and plans from the
pricings and cost rows, and the tests compare what it rebuilt with what really happened.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, time, timedelta
from functools import cached_property

import polars as pl

from flows.simulator import plans
from flows.simulator.costs import cost_versions, last_billed_day, workspace_rows
from flows.simulator.model import (
    MICROSECONDS_PER_HOUR,
    TIMESTAMP,
    VMSS_TYPE,
    Anomaly,
    ConnectorSpec,
    Event,
    MachineSpec,
    MachineTimeline,
    OtherCharge,
    ScaleSetSpec,
    SubscriptionSpec,
    WorkspaceCharge,
    operation_events,
    scale_set_operation_name,
)
from transforms.billing import (
    ACTIVITY_LOG_RETENTION_DAYS,
    ARC_BILLABLE_STATES,
    VM_BILLABLE_STATES,
)

TENANT_ID = "72f988bf-0000-4000-8000-00000000c0de"

# VM states and Arc statuses have different names, so one set tells what is billable.
BILLABLE_STATES = sorted(VM_BILLABLE_STATES | ARC_BILLABLE_STATES)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _columns_frame(columns: dict[str, list], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """A frame built column by column. Timestamps travel as integer microseconds, which polars
    reads several times faster than timezone-aware datetime objects."""
    series = []
    for name, dtype in schema.items():
        values = columns[name]
        if dtype == TIMESTAMP:
            micros = [None if v is None else (v - _EPOCH) // _MICROSECOND for v in values]
            series.append(pl.Series(name, micros, dtype=pl.Int64).cast(TIMESTAMP))
        else:
            series.append(pl.Series(name, values, dtype=dtype))
    return pl.DataFrame(series)


_INTERVAL_SCHEMA: dict[str, pl.DataType] = {
    "resource_id": pl.String(),
    "state": pl.String(),
    "start_at": TIMESTAMP,
    "end_at": TIMESTAMP,
}


class EstateBuilder:
    """Assembles an estate: subscriptions, machines and their timelines, deliberate anomalies.

    `Estate.generate` uses it with the profiles in `flows.simulator.profiles`; tests use it to
    hand-build a tiny estate whose figures can be worked out by hand.
    """

    def __init__(self, *, seed: int, window_start: datetime, now: datetime) -> None:
        if window_start.tzinfo is None or now.tzinfo is None:
            raise ValueError("window_start and now must be timezone-aware UTC datetimes")
        if not window_start < now:
            raise ValueError(f"window_start {window_start} must be before now {now}")
        self.seed = seed
        self.rng = random.Random(seed)
        self.window_start = window_start.astimezone(UTC)
        self.now = now.astimezone(UTC)
        self.subscriptions: list[SubscriptionSpec] = []
        self.scale_sets: list[ScaleSetSpec] = []
        self.timelines: list[MachineTimeline] = []
        self.anomalies: list[Anomaly] = []
        self.workspace_charges: list[WorkspaceCharge] = []
        self.other_charges: list[OtherCharge] = []
        self.connectors: list[ConnectorSpec] = []
        self.scale_set_events: list[tuple[ScaleSetSpec, Event]] = []
        # Tags of resource groups, keyed by (subscription id, group name as spelled).
        self.resource_group_tags: dict[tuple[str, str], dict[str, str]] = {}

    def tag_resource_group(
        self, subscription: SubscriptionSpec, name: str, tags: dict[str, str]
    ) -> None:
        """Give resource group `name` tags (inherited by its machines that lack them)."""
        self.resource_group_tags[(subscription.subscription_id, name)] = dict(tags)

    def add_subscription(self, subscription: SubscriptionSpec) -> SubscriptionSpec:
        self.subscriptions.append(subscription)
        return subscription

    def add_scale_set(self, scale_set: ScaleSetSpec) -> ScaleSetSpec:
        self.scale_sets.append(scale_set)
        return scale_set

    def add_machine(self, machine: MachineSpec, *, initial_state: str | None) -> MachineTimeline:
        """Add a machine. One that exists before the window starts gets `initial_state` there;
        one created inside the window passes None and is then created with `timeline.create`."""
        if machine.subscription not in self.subscriptions:
            raise ValueError(f"add subscription {machine.subscription.subscription_id} first")
        observed_from = max(machine.created_at, self.window_start)
        timeline = MachineTimeline(
            machine, self.rng, observed_from=observed_from, initial_state=initial_state
        )
        self.timelines.append(timeline)
        return timeline

    def add_anomaly(self, anomaly: Anomaly) -> None:
        self.anomalies.append(anomaly)

    def add_workspace_charge(self, charge: WorkspaceCharge) -> None:
        self.workspace_charges.append(charge)

    def add_other_charge(self, charge: OtherCharge) -> None:
        self.other_charges.append(charge)

    def add_connector(self, connector: ConnectorSpec) -> ConnectorSpec:
        self.connectors.append(connector)
        return connector

    def operate_scale_set(
        self,
        scale_set: ScaleSetSpec,
        operation: str,
        at: datetime,
        duration: timedelta,
        *,
        caller: str,
    ) -> list[MachineTimeline]:
        """Run `operation` on the whole scale set, as `az vmss deallocate` does: every instance
        existing at `at` changes state, and only the set logs events (on its own id).

        Raises `OperationRefused` if an instance cannot follow (busy, or in a state Azure would
        refuse); returns the instances that followed.
        """
        instances = [
            t
            for t in self.timelines
            if t.machine.scale_set is scale_set and t.state is not None and t.free_at <= at
        ]
        for timeline in instances:
            timeline.follow_scale_set(operation, at, duration)
        events = operation_events(
            self.rng,
            scale_set_operation_name(operation),
            operation,
            at,
            at + duration,
            succeeded=True,
            caller=caller,
        )
        self.scale_set_events.extend((scale_set, event) for event in events)
        return instances

    def build(self) -> Estate:
        for timeline in self.timelines:
            timeline.close(self.now)
        return Estate(self)


class Estate:
    """A generated estate: the specs the server renders, and ground-truth frames for tests."""

    def __init__(self, builder: EstateBuilder) -> None:
        self.seed = builder.seed
        self.window_start = builder.window_start
        self.now = builder.now
        self.subscription_specs = list(builder.subscriptions)
        self.scale_set_specs = list(builder.scale_sets)
        self.timelines = list(builder.timelines)
        self.anomaly_specs = list(builder.anomalies)
        self.workspace_charges = list(builder.workspace_charges)
        self.other_charges = list(builder.other_charges)
        self.connector_specs = list(builder.connectors)
        self.scale_set_events = list(builder.scale_set_events)
        self.resource_group_tags = dict(builder.resource_group_tags)
        self.tenant_id = TENANT_ID
        self.machine_by_id = {t.machine.arm_id.lower(): t for t in self.timelines}
        self.subscription_by_id = {s.subscription_id: s for s in self.subscription_specs}

    @classmethod
    def generate(cls, seed: int, machines: int, months: int, now: datetime) -> Estate:
        """A realistic estate of `machines` machines observed over the `months` before `now`."""
        from flows.simulator.profiles import generate_estate

        return generate_estate(seed=seed, machines=machines, months=months, now=now)

    def resource_groups(self, subscription_id: str) -> list[tuple[str, dict[str, str]]]:
        """The subscription's resource groups (every group a machine, scale set, workspace or
        tag names), sorted by name, with their tags."""
        names = {
            m.resource_group
            for m in (t.machine for t in self.timelines)
            if m.subscription.subscription_id == subscription_id
        }
        names |= {
            s.resource_group
            for s in self.scale_set_specs
            if s.subscription.subscription_id == subscription_id
        }
        names |= {
            w.resource_group
            for w in self.workspace_charges
            if w.subscription.subscription_id == subscription_id
        }
        names |= {name for sub, name in self.resource_group_tags if sub == subscription_id}
        return [
            (name, self.resource_group_tags.get((subscription_id, name), {}))
            for name in sorted(names, key=str.lower)
        ]

    # -- ground truth --------------------------------------------------------------------------
    @property
    def subscriptions(self) -> list[str]:
        return [s.subscription_id for s in self.subscription_specs]

    @cached_property
    def _machines(self) -> pl.DataFrame:
        rows = []
        for timeline in self.timelines:
            m = timeline.machine
            first_seen = m.created_at
            rows.append(
                {
                    "resource_id": m.arm_id.lower(),
                    "arm_id": m.arm_id,
                    "subscription_id": m.subscription.subscription_id,
                    "resource_group": m.resource_group,
                    "machine_name": m.machine_name,
                    "machine_kind": m.kind,
                    "vm_id": m.vm_id,
                    "scale_set_name": m.scale_set.name if m.scale_set else None,
                    "instance_id": m.instance_id,
                    "created_at": first_seen,
                    "deleted_at": timeline.deleted_at,
                    "moved_at": timeline.moved_out_at,
                    "os_type": m.os_type,
                    "size": m.size or None,  # an Arc machine has none
                    "location": m.location,
                    "mde_sensor": m.mde_sensor,
                    "defender_plan": plans.machine_plan_at(m, self.now),
                    "pricing_override": m.pricing_override,
                    "profile": m.profile,
                    "provider": m.provider,
                    "tags": json.dumps(m.tags, sort_keys=True),
                }
            )
        schema: dict[str, pl.DataType] = {
            "resource_id": pl.String(),
            "arm_id": pl.String(),
            "subscription_id": pl.String(),
            "resource_group": pl.String(),
            "machine_name": pl.String(),
            "machine_kind": pl.String(),
            "vm_id": pl.String(),
            "scale_set_name": pl.String(),
            "instance_id": pl.String(),
            "created_at": TIMESTAMP,
            "deleted_at": TIMESTAMP,
            "moved_at": TIMESTAMP,
            "os_type": pl.String(),
            "size": pl.String(),
            "location": pl.String(),
            "mde_sensor": pl.Boolean(),
            "defender_plan": pl.String(),
            "pricing_override": pl.String(),
            "profile": pl.String(),
            "provider": pl.String(),
            "tags": pl.String(),
        }
        return _columns_frame({name: [row[name] for row in rows] for name in schema}, schema)

    def machines(self) -> pl.DataFrame:
        """One row per machine that existed in the window (deleted ones too), ids lower-cased.

        `defender_plan` is the plan at `now`; `plans_daily` has the plan of each day. An id
        moved out (case 9) ends at `moved_at` and is not deleted: `deleted_at` is a delete's.
        """
        return self._machines.select(
            "resource_id",
            "subscription_id",
            "resource_group",
            "machine_name",
            "machine_kind",
            "vm_id",
            "scale_set_name",
            "created_at",
            pl.when(pl.col("moved_at").is_null()).then("deleted_at").alias("deleted_at"),
            "moved_at",
            "os_type",
            "size",
            "location",
            "mde_sensor",
            "defender_plan",
            "profile",
            "provider",
        )

    @cached_property
    def _intervals(self) -> pl.DataFrame:
        columns: dict[str, list] = {name: [] for name in _INTERVAL_SCHEMA}
        for timeline in self.timelines:
            resource_id = timeline.machine.arm_id.lower()
            for interval in timeline.intervals:
                columns["resource_id"].append(resource_id)
                columns["state"].append(interval.state)
                columns["start_at"].append(interval.start_at)
                columns["end_at"].append(interval.end_at)
        return _columns_frame(columns, _INTERVAL_SCHEMA).sort("resource_id", "start_at")

    def state_intervals(self) -> pl.DataFrame:
        """The true timeline: resource_id, state, start_at, end_at ([start, end), UTC, to `now`)."""
        return self._intervals.with_columns(billable=pl.col("state").is_in(BILLABLE_STATES))

    @cached_property
    def _billable_hours_daily(self) -> pl.DataFrame:
        day = timedelta(days=1)
        per_day = (
            self._intervals.lazy()
            .with_columns(
                usage_date=pl.date_ranges(
                    pl.col("start_at").dt.date(),
                    (pl.col("end_at") - pl.duration(microseconds=1)).dt.date(),
                )
            )
            .explode("usage_date")
            .with_columns(
                day_start=pl.col("usage_date").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
            )
            .with_columns(
                overlap=(
                    pl.min_horizontal("end_at", pl.col("day_start") + day)
                    - pl.max_horizontal("start_at", "day_start")
                ).dt.total_microseconds()
            )
            # Integer microseconds sum exactly and in any order, so a seed gives the same figures
            # to the last digit however the group-by is parallelised.
            .group_by("usage_date", "resource_id")
            .agg(
                billable_microseconds=pl.col("overlap")
                .filter(pl.col("state").is_in(BILLABLE_STATES))
                .sum()
            )
            .with_columns(billable_hours=pl.col("billable_microseconds") / MICROSECONDS_PER_HOUR)
        )
        subscriptions = self._machines.lazy().select("resource_id", "subscription_id")
        return (
            per_day.join(subscriptions, on="resource_id", how="left")
            .select(
                "usage_date",
                "resource_id",
                "subscription_id",
                "billable_hours",
                "billable_microseconds",
            )
            .sort("usage_date", "resource_id")
            .collect()
        )

    def billable_hours_daily(self) -> pl.DataFrame:
        """Billable hours per machine and UTC day, exact to the microsecond, from the timeline.

        A row exists for every day the machine existed in the window, 0.0 when it was never
        billable that day; the day `now` falls in is partial (up to `now`).
        """
        return self._billable_hours_daily

    @cached_property
    def _events(self) -> pl.DataFrame:
        schema: dict[str, pl.DataType] = {
            "event_data_id": pl.String(),
            "correlation_id": pl.String(),
            "event_at": TIMESTAMP,
            "submission_at": TIMESTAMP,
            "resource_id": pl.String(),
            "arm_id": pl.String(),
            "subscription_id": pl.String(),
            "resource_group": pl.String(),
            "resource_type": pl.String(),
            "operation_name": pl.String(),
            "operation": pl.String(),
            "status": pl.String(),
            "sub_status": pl.String(),
            "http_method": pl.String(),
            "caller": pl.String(),
            "client_request_id": pl.String(),
        }
        columns: dict[str, list] = {name: [] for name in schema}
        logs: list[tuple[tuple[str, str, str, str], list[Event]]] = [
            (
                (
                    t.machine.arm_id,
                    t.machine.subscription.subscription_id,
                    t.machine.resource_group,
                    t.machine.resource_type,
                ),
                t.events,
            )
            for t in self.timelines
        ]
        # Operations on a whole scale set are logged once, on the set's own id.
        logs.extend(
            (
                (ss.arm_id, ss.subscription.subscription_id, ss.resource_group, VMSS_TYPE),
                [event],
            )
            for ss, event in self.scale_set_events
        )
        for (arm_id, subscription_id, resource_group, resource_type), events in logs:
            count = len(events)
            for name, value in (
                ("resource_id", arm_id.lower()),
                ("arm_id", arm_id),
                ("subscription_id", subscription_id),
                ("resource_group", resource_group),
                ("resource_type", resource_type),
            ):
                columns[name].extend([value] * count)
            for e in events:
                columns["event_data_id"].append(e.event_data_id)
                columns["correlation_id"].append(e.correlation_id)
                columns["event_at"].append(e.event_at)
                columns["submission_at"].append(e.submission_at)
                columns["operation_name"].append(e.operation_name)
                columns["operation"].append(e.operation)
                columns["status"].append(e.status)
                columns["sub_status"].append(e.sub_status)
                columns["http_method"].append(e.http_method)
                columns["caller"].append(e.caller)
                columns["client_request_id"].append(e.client_request_id)
        return _columns_frame(columns, schema).sort("event_at", "event_data_id", descending=True)

    def activity_events(self) -> pl.DataFrame:
        """Every Activity Log event of the estate (the server serves those within retention)."""
        return self._events.select(
            "event_data_id",
            "correlation_id",
            "event_at",
            "resource_id",
            "subscription_id",
            "resource_group",
            "operation_name",
            "operation",
            "status",
        )

    def served_events(self, clock: datetime) -> pl.DataFrame:
        """The events the Activity Log holds at `clock`: already happened, within 90 days."""
        oldest = clock - timedelta(days=ACTIVITY_LOG_RETENTION_DAYS)
        return self._events.filter((pl.col("event_at") <= clock) & (pl.col("event_at") >= oldest))

    @cached_property
    def _cost_versions(self) -> pl.DataFrame:
        return cost_versions(self)

    def cost_rows(self, as_of: datetime | None = None) -> pl.DataFrame:
        """Cost rows at the finest grouping, as the Query API reports them at `as_of`.

        Default: the final figures, after every restatement. A day's rows appear once the day is
        over and are first reported incomplete; the final figures replace them two days after
        the day starts, both later by the subscription's `cost_lag`. The day `now` falls in is
        never billed, nor a lagging subscription's days after its `last_billed_days`.
        """
        versions = self._cost_versions
        if as_of is None:
            visible = versions.filter(pl.col("visible_until").is_null())
        else:
            visible = versions.filter(
                (pl.col("visible_from") <= as_of)
                & (pl.col("visible_until").is_null() | (pl.col("visible_until") > as_of))
            )
        return visible.drop("visible_from", "visible_until")

    def anomalies(self) -> pl.DataFrame:
        """The deliberate billing errors in the cost data, with the billable hours that day."""
        hours = self._billable_hours_daily.select("usage_date", "resource_id", "billable_hours")
        frame = pl.DataFrame(
            [
                {
                    "resource_id": a.machine.arm_id.lower(),
                    "subscription_id": a.machine.subscription.subscription_id,
                    "usage_date": a.usage_date,
                    "finding": a.finding,
                    "plan": plans.machine_plan_at(
                        a.machine, datetime.combine(a.usage_date, time(), tzinfo=UTC)
                    ),
                    "billed_hours": a.billed_hours,
                }
                for a in self.anomaly_specs
            ],
            schema={
                "resource_id": pl.String,
                "subscription_id": pl.String,
                "usage_date": pl.Date,
                "finding": pl.String,
                "plan": pl.String,
                "billed_hours": pl.Float64,
            },
            orient="row",
        )
        return frame.join(hours, on=["usage_date", "resource_id"], how="left").with_columns(
            pl.col("billable_hours").fill_null(0.0)
        )

    @property
    def override_enabled_at(self) -> datetime:
        """When the resource-level settings that predate the window were made."""
        return self.window_start - timedelta(days=30)

    def pricings(self, at: datetime | None = None) -> pl.DataFrame:
        """Defender for Servers settings at `at` (default `now`): one row per subscription, one
        per machine or scale set with a setting of its own (`inherited` False), and one per
        scale-set instance inheriting its set's setting (`inherited_from` the set)."""
        return plans.pricings_frame(
            self.subscription_specs,
            [*self.scale_set_specs, *(t.machine for t in self.timelines)],
            self.now if at is None else at,
            override_enabled_at=self.override_enabled_at,
        )

    @cached_property
    def _plans_daily(self) -> pl.DataFrame:
        periods = plans.plan_periods(
            [t.machine for t in self.timelines], self.window_start, self.now
        )
        return (
            self._billable_hours_daily.sort("usage_date")
            .join_asof(
                periods.sort("valid_from"),
                left_on="usage_date",
                right_on="valid_from",
                by="resource_id",
                strategy="backward",
                # Sorted by day overall, hence within each machine too.
                check_sortedness=False,
            )
            .select(
                "usage_date",
                "resource_id",
                "subscription_id",
                "plan",
                pl.col("trial").fill_null(False),
                "benefit",
                "billable_hours",
                "billable_microseconds",
            )
            .sort("usage_date", "resource_id")
        )

    def plans_daily(self) -> pl.DataFrame:
        """Per machine and UTC day: the plan in force (P1, P2, None when not covered), whether
        the day is in the subscription's free trial (billed at 0), the benefit on the meter
        (`mde` from the approval day), and the billable hours (`billable_hours_daily`)."""
        return self._plans_daily.drop("billable_microseconds")

    def benefit_machines(self) -> pl.DataFrame:
        """Machines billed on the "... - MDATP Benefit" meter, from the approval day on."""
        return pl.DataFrame(
            [
                (t.machine.arm_id.lower(), t.machine.mde_benefit_from.date())
                for t in self.timelines
                if t.machine.mde_benefit_from is not None
            ],
            schema={"resource_id": pl.String, "approved_on": pl.Date},
            orient="row",
        )

    def last_billed_days(self, as_of: datetime | None = None) -> pl.DataFrame:
        """Per subscription: the last day whose cost rows are reported at `as_of` (default
        `now`), which a subscription whose cost data lags reaches later."""
        clock = self.now if as_of is None else as_of
        return pl.DataFrame(
            [
                (s.subscription_id, s.cost_lag.days, last_billed_day(s, clock))
                for s in self.subscription_specs
            ],
            schema={
                "subscription_id": pl.String,
                "cost_lag_days": pl.Int64,
                "last_billed_day": pl.Date,
            },
            orient="row",
        )

    def non_machine_charges(self) -> pl.DataFrame:
        """Defender for Servers charged on ids that are not collected machines (a Log Analytics
        workspace, a connector, a directly onboarded server), as billed: usage_date,
        subscription_id, resource_id, plan, quantity, cost."""
        return workspace_rows([*self.workspace_charges, *self.other_charges]).collect()

    def moves(self) -> pl.DataFrame:
        """Machines moved between subscriptions: the vmId kept, the old and new ids, the move
        instant, and the subscription the move day is billed under (the old one)."""
        return pl.DataFrame(
            [
                {
                    "vm_id": t.machine.vm_id,
                    "from_resource_id": t.machine.moved_from.arm_id.lower(),
                    "to_resource_id": t.machine.arm_id.lower(),
                    "moved_at": t.machine.created_at,
                    "billed_under": t.machine.moved_from.subscription.subscription_id,
                }
                for t in self.timelines
                if t.machine.moved_from is not None
            ],
            schema={
                "vm_id": pl.String,
                "from_resource_id": pl.String,
                "to_resource_id": pl.String,
                "moved_at": TIMESTAMP,
                "billed_under": pl.String,
            },
            orient="row",
        )

    # -- the estate as the server sees it at a clock ------------------------------------------
    def alive_at(self, clock: datetime) -> pl.DataFrame:
        """Machines that exist at `clock` (created, not yet deleted) with their power state."""
        at = min(clock, self.now - timedelta(microseconds=1))
        # `state_since`: when the current state began (an Arc machine's lastStatusChange); a
        # state held since before the window began at the machine's creation.
        states = self._intervals.filter(
            (pl.col("start_at") <= at) & (pl.col("end_at") > at)
        ).select("resource_id", "state", state_since="start_at")
        return (
            self._machines.filter(
                (pl.col("created_at") <= clock)
                & (pl.col("deleted_at").is_null() | (pl.col("deleted_at") > clock))
            )
            .join(states, on="resource_id", how="inner")
            .with_columns(
                state_since=pl.when(pl.col("state_since") <= self.window_start)
                .then(pl.min_horizontal("created_at", "state_since"))
                .otherwise("state_since")
            )
            .sort("subscription_id", "resource_id")
        )
