"""The whole warehouse from the raw lake: every contract view, computed in dependency order.

raw (lake datasets) -> staging (machines, power intervals, billable hours) -> marts (charges,
comparisons, findings), as in dbt's raw -> staging -> marts. Each view is materialised once and
fed to the views that depend on it, so a view used five times is computed once.

A large estate is built in chunks of whole subscriptions, so memory holds one chunk's views at a
time (benchmarks/analysis.md). Every figure is the same as in one piece, because:

- what a chunk must judge by is computed over the whole lake first (`EstateFacts`): the
  history window, the day of the latest inventory snapshot (a subscription missing from the last
  collection must not set its own "latest"), the last day with any Defender charge;
- the subscriptions of a machine moved between them, or of a Defender charge billed under one
  subscription on a resource of another, are in one chunk (`linked_subscriptions`);
- cost rows are chunked by the subscription they were billed under, and rows of no known
  subscription make a chunk of their own (the caller's `RawLake` per chunk holds them);
- the estate's fleet row adds up the chunks' shares, and its peak is the running sum of every
  chunk's concurrency deltas (`comparison.finish_fleet`); the licensing options add the
  chunks' parts (`options.finish_options`), and `mde_benefit_unclaimed` takes the leaders of
  every chunk's MDE component leaders.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Final

import polars as pl

from transforms.anomalies import AnomalyRule, cost_anomalies, plan_changes
from transforms.billing import FINDINGS_TOLERANCE_HOURS, device_name_expr, is_arm_id_expr
from transforms.charges import (
    cost_row_subscription,
    defender_charges_from,
    defender_rows,
    is_billed_defender_row,
)
from transforms.comparison import (
    PricedUsage,
    concurrency_deltas,
    finish_fleet,
    fleet_part,
    licensing_comparison_from,
    price_calendar,
    priced_usage,
    seat_prices_monthly,
)
from transforms.contract import UTC_TIMESTAMP
from transforms.findings import (
    benefit_unclaimed_findings,
    combine_findings,
    machine_findings,
    mde_component_leaders,
    most_seats_owned,
)
from transforms.incremental import lookback_start, month_start
from transforms.machines import (
    classified_operations,
    event_bounds,
    latest_snapshot_date,
    machine_identities,
    machines_from,
    power_snapshots,
    resource_id,
    subscription_of,
)
from transforms.options import (
    LicensingTerms,
    block_members,
    cut_offs,
    finish_options,
    option_parts,
    seat_block_parts,
    term_priced_book,
)
from transforms.plans import machine_days, machine_plans_daily, pricing_coverage
from transforms.power import evidence_states, intervals_of, machine_hours_daily
from transforms.resume import (
    ResumeState,
    carried_events,
    resume_points,
    resume_refused,
)
from transforms.showback import SUBSCRIPTION, finish_showback, showback_part

# Two polars engines, each where it is faster and safe. The scans of the whole lake (the estate
# facts, the linked subscriptions) run on the streaming engine (polars' default), in morsels: memory
# stays bounded whatever the lake's size. A chunk's views are collected with the in-memory engine:
# a chunk fits in memory by construction, and on the 10k benchmark's chunk the in-memory engine
# took 0.2-0.5x the streaming engine's CPU on the machine and power views, and less wall time with
# one or two threads (benchmarks/analysis.md, session 5). Its small groups are added in a fixed
# order, and large groups are added with `contract.order_free_sum`: a rebuild gives the same
# figures to the bit.
LAKE_SCAN_ENGINE: Final = "streaming"
VIEW_ENGINE: Final = "in-memory"

# The views a chunk adds rows to, in the order they are computed (the warehouse's tables).
CHUNKED_VIEWS: Final = (
    "machines",
    "power_intervals",
    "machine_hours_daily",
    "defender_charges_daily",
    "machine_plans_daily",
    "licensing_comparison_monthly",
    "findings",
)
# The views the estate step computes from every chunk's parts.
ESTATE_VIEWS: Final = (
    "fleet_comparison_monthly",
    "licensing_options_monthly",
    "showback_monthly",
    "findings",
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# No subscription's management group known (a lake without the subscriptions dataset).
_NO_SUBSCRIPTIONS: Final = pl.LazyFrame(
    schema={"subscription_id": pl.String, "management_group_path": pl.String}
)


@dataclass(frozen=True)
class MartOptions:
    """The choices a build is made with; recorded in the warehouse beside the views."""

    seat_option: str
    currency: str
    partial_hours: str
    seats_owned: Mapping[str, int] = field(default_factory=dict)
    terms: LicensingTerms = field(default_factory=LicensingTerms)
    # Showback groupings ([report] group_by) and when a month's cost is an anomaly.
    group_by: tuple[str, ...] = (SUBSCRIPTION,)
    anomaly: AnomalyRule = field(default_factory=AnomalyRule)


@dataclass(frozen=True)
class RawLake:
    """The raw lake datasets, as lazy scans with their declared schemas."""

    inventory: pl.LazyFrame
    pricings: pl.LazyFrame
    power_events: pl.LazyFrame
    costs: pl.LazyFrame


@dataclass(frozen=True)
class EstateFacts:
    """What every chunk is judged by, computed once over the whole lake.

    `history`: the power history the lake holds (`history_window`; None for an empty lake);
    `latest_snapshot_date`: the day of the latest inventory snapshot; `billed_through`: the last
    day with a Defender charge in the history (None: no charge).
    """

    history: tuple[datetime, datetime] | None
    latest_snapshot_date: date | None
    billed_through: date | None

    @property
    def window_start(self) -> datetime:
        return self.history[0] if self.history else _EPOCH

    @property
    def window_end(self) -> datetime:
        return self.history[1] if self.history else _EPOCH


@dataclass(frozen=True)
class EstateParts:
    """What one chunk hands the estate step: its part of the fleet comparison (`fleet_rows`,
    `estate_deltas`: see `comparison.FleetPart`), of the licensing options
    (`options.option_parts`, and the machines its seat blocks count: `options.block_members`),
    its MDE component leaders (`findings.mde_component_leaders`),
    its scopes' last billed days (`options.cut_offs`) and its showback rows
    (`showback.showback_part`)."""

    fleet_rows: pl.DataFrame
    estate_deltas: pl.DataFrame
    option_parts: pl.DataFrame
    block_members: pl.DataFrame
    leaders: pl.DataFrame
    cut_offs: pl.DataFrame
    showback: pl.DataFrame


@dataclass(frozen=True)
class ChunkViews:
    """One chunk's rows of the `CHUNKED_VIEWS`, its parts of the estate-wide views, and what
    its next build resumes its timelines from."""

    views: dict[str, pl.DataFrame]
    parts: EstateParts
    resume: ResumeState


def history_window(raw: RawLake) -> tuple[datetime, datetime] | None:
    """[start, end) of what the lake knows about power states, or None for an empty lake.

    It starts on the first day of the month of the earliest event or snapshot (collection
    covers whole months) and ends at the latest one: the present, as the last run saw it.
    """
    bounds = pl.concat(
        [
            raw.power_events.select(at=pl.col("event_at")),
            raw.inventory.select(at=pl.col("snapshot_at")),
        ]
    ).select(first=pl.col("at").min(), last=pl.col("at").max())
    first, last = bounds.collect(engine=LAKE_SCAN_ENGINE).row(0)
    if first is None:
        return None
    month_start = first.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return month_start, last.astimezone(UTC)


def estate_facts(raw: RawLake, costs_by_month: Sequence[pl.LazyFrame] | None = None) -> EstateFacts:
    """The `EstateFacts` of the whole lake (a few column scans, no view).

    `costs_by_month`: the lake's cost rows in pieces of one calendar month of
    `charge_period_start` each, newest first (the lake's partitions). The last billed day is
    then looked for month by month, stopping at the first month that has one, rather than in
    every cost row of the lake (at 100k machines, 55M rows of string tests).
    """
    history = history_window(raw)
    start, end = history or (_EPOCH, _EPOCH)
    latest = latest_snapshot_date(raw.inventory).collect(engine=LAKE_SCAN_ENGINE).item()
    billed_through = None
    for costs in [raw.costs] if costs_by_month is None else costs_by_month:
        billed_through = last_billed_day(costs, start, end)
        if billed_through is not None:
            break
    return EstateFacts(history, latest, billed_through)


def last_billed_day(costs: pl.LazyFrame, start: datetime, end: datetime) -> date | None:
    """The last day in [start, end) with a Defender charge (`is_billed_defender_row`) in
    `costs`, or None."""
    day: date | None = (
        _costs_in_window(costs, start, end)
        .filter(is_billed_defender_row())
        .select(pl.col("charge_period_start").max().dt.date())
        .collect(engine=LAKE_SCAN_ENGINE)
        .item()
    )
    return day


def _costs_in_window(costs: pl.LazyFrame, start: datetime, end: datetime) -> pl.LazyFrame:
    """Cost rows inside the power-history window. Outside it nothing is known of the machines'
    hours, so every charge would look billed-while-not-billable; those rows stay in `costs`."""
    return costs.filter(pl.col("charge_period_start").is_between(start, end, closed="left"))


def linked_subscriptions(
    inventory: pl.LazyFrame, costs: pl.LazyFrame | None = None
) -> list[frozenset[str]]:
    """Sets of subscriptions that must be built together: those that share a machine (a vmId
    listed in each: a moved VM), those a Defender charge links (billed under one
    subscription, `cost_row_subscription`, on a resource of another: a moved VM's move-day
    charge, a billing-account export row), and a subscription billed for a server onboarded
    directly through Defender for Endpoint with those holding an Arc machine of that name (the
    `duplicate_onboarding` finding compares them). Built apart, the charge would meet no machine
    in its billing subscription's chunk and the machine none of its charges in its own.
    """
    by_vm = (
        inventory.select(
            key=pl.col("vm_id").str.to_lowercase(),
            subscription_id=pl.col("subscription_id").str.to_lowercase(),
        )
        .filter(pl.col("key").is_not_null())
        .unique()
    )
    pairs = [by_vm]
    if costs is not None:
        # Cheap first (every cost row): ids whose subscription segment is not the row's own
        # subscription; then, on those few rows, the Defender test and the exact subscriptions.
        segment = pl.col("resource_id").str.slice(len("/subscriptions/"), 36).str.to_lowercase()
        elsewhere = costs.filter(
            segment != pl.col("subscription_id").str.strip_chars().str.to_lowercase()
        ).collect(engine=LAKE_SCAN_ENGINE)
        crossing = (
            elsewhere.lazy()
            .filter(is_billed_defender_row())
            .select(billed_under=cost_row_subscription(), charged_on=subscription_of(resource_id()))
            .filter(pl.col("billed_under") != pl.col("charged_on"))
            .unique()
            .with_columns(key=pl.concat_str("billed_under", "charged_on", separator="|"))
        )
        # Directly onboarded servers' rows carry no ARM id: never their own subscription's.
        devices = (
            elsewhere.lazy()
            .filter(is_billed_defender_row() & ~is_arm_id_expr(resource_id()))
            .select(
                key=pl.lit("device|") + device_name_expr(resource_id()),
                subscription_id=cost_row_subscription(),
            )
            .unique()
        )
        arc_namesakes = (
            inventory.filter(pl.col("machine_kind").str.to_lowercase() == "arc")
            .select(
                key=pl.lit("device|") + device_name_expr(pl.col("machine_name")),
                subscription_id=pl.col("subscription_id").str.to_lowercase(),
            )
            .join(devices, on="key", how="semi")
        )
        pairs += [
            crossing.select("key", subscription_id="billed_under"),
            crossing.select("key", subscription_id="charged_on"),
            devices,
            arc_namesakes,
        ]
    shared = (
        pl.concat(pairs)
        .unique()
        .group_by("key")
        .agg(pl.col("subscription_id").sort())
        .filter(pl.col("subscription_id").list.len() > 1)
        .select("subscription_id")
        .unique()
        .collect(engine=LAKE_SCAN_ENGINE)
    )
    return sorted(
        (frozenset(group) for group in shared["subscription_id"].to_list()),
        key=lambda group: sorted(group),
    )


def plan_chunks(
    subscription_weights: Mapping[str, int],
    links: Iterable[frozenset[str]],
    max_weight: int,
) -> list[tuple[str, ...]]:
    """Pack subscriptions into chunks of at most `max_weight` (a linked set is never split, and
    one heavier than `max_weight` is a chunk of its own). Deterministic: sorted ids, in order."""
    parent = {subscription: subscription for subscription in subscription_weights}

    def root(subscription: str) -> str:
        while parent[subscription] != subscription:
            parent[subscription] = parent[parent[subscription]]
            subscription = parent[subscription]
        return subscription

    for group in links:
        members = sorted(member for member in group if member in parent)
        for member in members[1:]:
            parent[root(member)] = root(members[0])
    components: dict[str, list[str]] = {}
    for subscription in sorted(subscription_weights):
        components.setdefault(root(subscription), []).append(subscription)
    chunks: list[tuple[str, ...]] = []
    current: list[str] = []
    weight = 0
    for component in sorted(components.values()):
        component_weight = sum(subscription_weights[member] for member in component)
        if current and weight + component_weight > max_weight:
            chunks.append(tuple(current))
            current, weight = [], 0
        current.extend(component)
        weight += component_weight
    if current:
        chunks.append(tuple(current))
    return chunks


@dataclass(frozen=True)
class Timelines:
    """A chunk's `machines` and `power_intervals`, which the other views read, and what its
    next build resumes them from (`transforms.resume`). Resumed (`resumed_timelines`),
    `power_intervals` holds a resumed machine's intervals from its resume point only
    (`resume.spliced_intervals` adds the published ones before it)."""

    machines: pl.DataFrame
    power_intervals: pl.DataFrame
    resume: ResumeState


def resume_cut(facts: EstateFacts) -> datetime:
    """Where a build records its chunks' resume points: the first instant of the present's
    month (the power events are partitioned by month, so a later build knows that none before
    it changed)."""
    return datetime.combine(month_start(facts.window_end), time(), UTC)


def chunk_timelines(raw: RawLake, facts: EstateFacts) -> Timelines:
    """The machines of `raw` and their power intervals, judged by the estate's `facts`."""
    timelines = _timelines(raw, facts, None)
    assert not isinstance(timelines, str), "a timeline from the whole history is never refused"
    return timelines


def resumed_timelines(raw: RawLake, facts: EstateFacts, previous: ResumeState) -> Timelines | str:
    """`chunk_timelines` resumed from `previous`, the chunk's last build's `ResumeState`
    (`raw.power_events` holds the events from its cut on); the reason they cannot be, if they
    cannot (`resume.resume_refused`)."""
    return _timelines(raw, facts, previous)


def _timelines(raw: RawLake, facts: EstateFacts, previous: ResumeState | None) -> Timelines | str:
    latest = pl.LazyFrame(
        {"latest_snapshot_date": [facts.latest_snapshot_date]},
        schema={"latest_snapshot_date": pl.Date},
    )
    events = raw.power_events
    points = earlier_bounds = earlier_lifecycle = None
    if previous is not None:
        events = pl.concat([previous.carried.lazy(), events], how="vertical_relaxed")
        points = previous.points.lazy()
        earlier_bounds = previous.bounds.lazy()
        earlier_lifecycle = points.select("resource_id", "created_by_event_at", "deleted_event_at")
    # The events' bounds before the cut are the next build's, and with the later events' they
    # are the identities': worked out once.
    cut = resume_cut(facts)
    before_cut = events.filter(pl.col("event_at") < cut)
    bounds = event_bounds(before_cut, earlier_bounds).collect(engine=VIEW_ENGINE)
    identities = machine_identities(
        raw.inventory, events.filter(pl.col("event_at") >= cut), latest, bounds.lazy()
    ).collect(engine=VIEW_ENGINE)
    ops = classified_operations(events, identities.lazy(), points).collect(engine=VIEW_ENGINE)
    snapshots = power_snapshots(raw.inventory)
    states = evidence_states(
        identities.lazy(),
        ops.lazy(),
        snapshots,
        window_start=facts.window_start,
        window_end=facts.window_end,
        resume=points,
    ).collect(engine=VIEW_ENGINE)
    if previous is not None:
        refused = resume_refused(previous, states, ops, identities, snapshots)
        if refused is not None:
            return refused
    machines = machines_from(
        identities.lazy(), ops.lazy(), raw.pricings, earlier_lifecycle
    ).collect(engine=VIEW_ENGINE)
    intervals = intervals_of(states.lazy()).collect(engine=VIEW_ENGINE)
    next_points = resume_points(
        states.lazy(), ops.lazy(), identities.lazy(), snapshots, cut, points
    ).collect(engine=VIEW_ENGINE)
    carried = carried_events(before_cut, ops.lazy(), next_points.lazy(), cut).collect(
        engine=VIEW_ENGINE
    )
    # Kept until the build records them, like the estate parts: copied out of the chunk's
    # frames, whose buffers their strings would otherwise keep alive (`_detached`).
    resume = ResumeState(cut, *(_detached(frame) for frame in (next_points, carried, bounds)))
    return Timelines(machines, intervals, resume)


# The day or month that places a row of a chunked view (other than the timelines) or of a
# chunk's estate part in a month: what an incremental build recomputes or copies by.
VIEW_MONTH_COLUMNS: Final = {
    "machine_hours_daily": "usage_date",
    "defender_charges_daily": "usage_date",
    "machine_plans_daily": "usage_date",
    "licensing_comparison_monthly": "month",
    "findings": "month",
}
# The findings the estate step makes (the others are a chunk's).
ESTATE_FINDINGS: Final = ("mde_benefit_unclaimed", "cost_anomaly")


def _from_month(frame: pl.DataFrame, column: str, first: date | None) -> pl.DataFrame:
    return frame if first is None else frame.filter(pl.col(column) >= first)


def chunk_views(
    raw: RawLake,
    price_book: pl.LazyFrame,
    options: MartOptions,
    facts: EstateFacts,
    timelines: Timelines | None = None,
    *,
    recompute_from: date | None = None,
    earlier_cut_offs: pl.DataFrame | None = None,
) -> ChunkViews:
    """Every view's rows for the machines and charges of `raw` (the whole lake, or a chunk of
    whole subscriptions), judged by the estate's `facts`.

    `timelines`: `chunk_timelines(raw, facts)`, when the caller has them already. With
    `recompute_from` (the first of a month, `transforms.incremental`), the dated views and the
    estate parts hold only the days and months from then on, computed from the day before
    (`transforms.incremental.lookback_start`; charges and intervals before it are not read);
    `earlier_cut_offs` are then the last billed days of the chunk's subscriptions before that
    day (`options.cut_offs` of the rows kept).
    """
    price_book = term_priced_book(price_book, options.terms)
    timelines = timelines or chunk_timelines(raw, facts)
    views: dict[str, pl.DataFrame] = {
        "machines": timelines.machines,
        "power_intervals": timelines.power_intervals,
    }
    machines = timelines.machines.lazy()
    intervals = timelines.power_intervals.lazy()
    window_start = facts.window_start
    if recompute_from is not None:
        read_from = datetime.combine(lookback_start(recompute_from), time(), UTC)
        intervals = intervals.filter(pl.col("end_at") > read_from).with_columns(
            start_at=pl.max_horizontal("start_at", pl.lit(read_from, dtype=UTC_TIMESTAMP))
        )
        window_start = max(window_start, read_from)
    views["machine_hours_daily"] = machine_hours_daily(
        intervals, machines, partial_hours=options.partial_hours
    ).collect(engine=VIEW_ENGINE)
    hours = views["machine_hours_daily"].lazy()
    coverage = pricing_coverage(hours, raw.pricings).collect(engine=VIEW_ENGINE).lazy()
    costs = _costs_in_window(raw.costs, window_start, facts.window_end)
    charged_rows = defender_rows(costs).collect(engine=VIEW_ENGINE).lazy()
    views["defender_charges_daily"] = defender_charges_from(
        charged_rows, hours, coverage, machines.select("resource_id")
    ).collect(engine=VIEW_ENGINE)
    del charged_rows
    charges = views["defender_charges_daily"].lazy()
    days = machine_days(coverage, charges, options.currency).collect(engine=VIEW_ENGINE).lazy()
    del coverage
    views["machine_plans_daily"] = machine_plans_daily(days).collect(engine=VIEW_ENGINE)
    plans = views["machine_plans_daily"].lazy()
    pricing = {"seat_option": options.seat_option, "currency": options.currency}
    usage = _materialised(
        priced_usage(machines, days, charges, price_book, **pricing, terms=options.terms)
    )
    del days
    views["licensing_comparison_monthly"] = licensing_comparison_from(
        machines, usage, **pricing
    ).collect(engine=VIEW_ENGINE)
    licensing = views["licensing_comparison_monthly"].lazy()
    deltas = concurrency_deltas(machines, intervals, usage).collect(engine=VIEW_ENGINE).lazy()
    part = fleet_part(machines, deltas, charges, usage, currency=options.currency)
    showback = showback_part(
        machines, hours, charges, licensing, options.group_by, currency=options.currency
    )
    (
        fleet_rows,
        estate_deltas,
        parts_of_options,
        members,
        leaders,
        scope_cut_offs,
        showback_rows,
    ) = pl.collect_all(
        [
            part.rows,
            part.estate_deltas,
            option_parts(usage.days),
            block_members(usage.days, options.terms),
            mde_component_leaders(licensing, charges, most_seats_owned(options.seats_owned)),
            cut_offs(charges),
            showback,
        ],
        engine=VIEW_ENGINE,
    )
    if earlier_cut_offs is not None:
        scope_cut_offs = (
            pl.concat([earlier_cut_offs, scope_cut_offs])
            .group_by("scope")
            .agg(pl.col("billed_through").max())
        )
    found = machine_findings(
        machines,
        hours,
        charges,
        plans,
        intervals,
        licensing,
        price_book,
        currency=options.currency,
        terms=options.terms,
        billed_through=facts.billed_through,
        scope_cut_offs=scope_cut_offs.lazy(),
        tolerance_hours=FINDINGS_TOLERANCE_HOURS[options.partial_hours],
    )
    views["findings"] = combine_findings([found, plan_changes(plans)]).collect(engine=VIEW_ENGINE)
    for name, column in VIEW_MONTH_COLUMNS.items():
        views[name] = _from_month(views[name], column, recompute_from)
    parts = EstateParts(
        fleet_rows=_detached(_from_month(fleet_rows, "month", recompute_from)),
        estate_deltas=_detached(_from_month(estate_deltas, "month", recompute_from)),
        option_parts=_detached(_from_month(parts_of_options, "month", recompute_from)),
        block_members=_detached(_from_month(members, "month", recompute_from)),
        leaders=_detached(_from_month(leaders, "month", recompute_from)),
        cut_offs=_detached(scope_cut_offs),
        showback=_detached(_from_month(showback_rows, "month", recompute_from)),
    )
    return ChunkViews(views, parts, timelines.resume)


def _detached(part: pl.DataFrame) -> pl.DataFrame:
    """`part` copied into buffers of its own. A few rows grouped out of a chunk's large frames
    keep those frames' string buffers alive (polars' strings are views), and the estate step
    holds every chunk's parts: at 100,000 machines, ~30 MB per chunk, 3.3 GB in all."""
    return pl.DataFrame(part.to_arrow())


def _history_months(facts: EstateFacts) -> pl.LazyFrame:
    """Every month of the lake's power history (none for an empty lake)."""
    if facts.history is None:
        return pl.LazyFrame(schema={"month": pl.Date})
    first, last = (moment.date().replace(day=1) for moment in facts.history)
    return pl.LazyFrame({"month": pl.date_range(first, last, "1mo", eager=True)})


def _materialised(usage: PricedUsage) -> PricedUsage:
    """`usage` with its frames computed once: every comparison view reads them."""
    frames = pl.collect_all(
        [
            usage.days,
            usage.plans,
            usage.seat_prices,
            usage.full_month_component,
        ],
        engine=VIEW_ENGINE,
    )
    return PricedUsage(*(frame.lazy() for frame in frames))


def _seat_option_prices(
    price_book: pl.LazyFrame, months: pl.LazyFrame, currency: str
) -> pl.LazyFrame:
    """Per month and seat option of the book: the seat price of the month's first day."""
    return (
        price_calendar(price_book, months, currency.upper())
        .filter((pl.col("kind") == "seat") & (pl.col("usage_date") == pl.col("month")))
        .select("month", seat_option="option", seat_price="rate")
    )


def estate_views(
    parts: Sequence[EstateParts],
    price_book: pl.LazyFrame,
    options: MartOptions,
    facts: EstateFacts,
    subscriptions: pl.LazyFrame | None = None,
) -> dict[str, pl.DataFrame]:
    """The estate-wide views from every chunk's parts (in chunk order):
    `fleet_comparison_monthly`, `licensing_options_monthly`, `showback_monthly` (its management
    groups from `subscriptions`, the lake's latest row per subscription; none: no subscription's
    management group is known) and the `mde_benefit_unclaimed` findings."""
    price_book = term_priced_book(price_book, options.terms)
    months = pl.concat([part.fleet_rows.lazy().select("month") for part in parts])
    seat_prices = seat_prices_monthly(
        price_book, months, seat_option=options.seat_option, currency=options.currency
    )
    fleet = finish_fleet(
        pl.concat([part.fleet_rows.lazy() for part in parts]),
        pl.concat([part.estate_deltas.lazy() for part in parts]),
        seat_prices,
        seat_option=options.seat_option,
        currency=options.currency,
    ).collect(engine=VIEW_ENGINE)
    estate_cut_off = pl.LazyFrame(
        {"scope": [None], "billed_through": [facts.billed_through]},
        schema={"scope": pl.String, "billed_through": pl.Date},
    )
    scope_cut_offs = pl.concat(
        [
            *(part.cut_offs.lazy() for part in parts),
            estate_cut_off,
        ]
    )
    option_months = pl.concat([part.option_parts.lazy().select("month") for part in parts])
    seat_blocks = seat_block_parts(
        [part.block_members.lazy() for part in parts], _history_months(facts), options.terms
    )
    licensing_options = finish_options(
        pl.concat([*(part.option_parts.lazy() for part in parts), seat_blocks], how="diagonal"),
        _seat_option_prices(price_book, option_months, options.currency),
        scope_cut_offs,
        options.terms,
        currency=options.currency,
    ).collect(engine=VIEW_ENGINE)
    unclaimed = benefit_unclaimed_findings(
        pl.concat([part.leaders.lazy() for part in parts]),
        currency=options.currency,
        seats_owned=options.seats_owned,
    )
    showback = finish_showback(
        pl.concat([part.showback.lazy() for part in parts]),
        _NO_SUBSCRIPTIONS if subscriptions is None else subscriptions,
    ).collect(engine=VIEW_ENGINE)
    anomalies = _cost_anomalies(fleet, showback, licensing_options, options)
    findings = combine_findings([unclaimed, anomalies]).collect(engine=VIEW_ENGINE)
    return {
        "fleet_comparison_monthly": fleet,
        "licensing_options_monthly": licensing_options,
        "showback_monthly": showback,
        "findings": findings,
    }


def _cost_anomalies(
    fleet: pl.DataFrame,
    showback: pl.DataFrame,
    licensing_options: pl.DataFrame,
    options: MartOptions,
) -> pl.LazyFrame:
    """`cost_anomaly` findings per subscription (its fleet rows) and per showback group, for
    the months complete in the licensing options (the subscription's, else the estate's)."""
    complete = (
        licensing_options.lazy()
        .group_by("month", "subscription_id")
        .agg(complete=pl.col("month_complete").all())
    )
    subscriptions = (
        fleet.lazy()
        .filter(pl.col("subscription_id").is_not_null())
        .select("subscription_id", "month", "billed_cost", "billable_hours")
        .join(complete, on=["month", "subscription_id"], how="left")
        .with_columns(pl.col("complete").fill_null(False))
    )
    estate_complete = complete.filter(pl.col("subscription_id").is_null()).drop("subscription_id")
    groups = (
        showback.lazy()
        .join(estate_complete, on="month", how="left")
        .with_columns(pl.col("complete").fill_null(False), subscription_id=pl.lit(None, pl.String))
    )
    group_words = pl.format(
        "showback group {} = {}",
        "group_key",
        pl.coalesce("group_value", pl.concat_str(pl.lit("("), "group_kind", pl.lit(")"))),
    )
    return pl.concat(
        [
            cost_anomalies(
                subscriptions,
                scope=pl.format("subscription {}", "subscription_id"),
                keys=["subscription_id"],
                rule=options.anomaly,
                currency=options.currency,
            ),
            cost_anomalies(
                groups,
                scope=group_words,
                keys=["group_key", "group_kind", "group_value"],
                rule=options.anomaly,
                currency=options.currency,
                with_amount=False,
            ),
        ]
    )


def build_marts(
    raw: RawLake,
    price_book: pl.LazyFrame,
    options: MartOptions,
    subscriptions: pl.LazyFrame | None = None,
) -> dict[str, pl.DataFrame]:
    """Every warehouse view of `raw` in one piece, wired as the chunked build is: for a lake
    small enough to hold at once (a notebook, a test), and the reference the chunked build is
    tested against. `subscriptions`: as `estate_views`."""
    facts = estate_facts(raw)
    chunk = chunk_views(raw, price_book, options, facts)
    estate = estate_views([chunk.parts], price_book, options, facts, subscriptions)
    findings = combine_findings([chunk.views["findings"].lazy(), estate["findings"].lazy()])
    return {
        **chunk.views,
        **estate,
        "findings": findings.collect(engine=VIEW_ENGINE),
    }
