"""Which Defender for Servers plan covered each machine on each day: `machine_plans_daily`.

A plan is a fact of each day, not of the month (DESIGN.md "The warehouse contract"): a machine
switched from P1 to P2 on the 16th is priced at P1 for fifteen days and P2 for the rest, and a
subscription enabled on the 20th covers nothing before it. The evidence, strongest first:

1. `billed`: the Defender meter billed to the machine that day (on its own id, or its share of a
   subscription- or scale-set-level charge): what Microsoft actually charged for.
2. `pricings_history`: the `Microsoft.Security/pricings/VirtualMachines` snapshot of the
   machine's subscription in force that day (the latest one taken on or before the day, or a
   later one whose `enablementTime` says its plan was switched on by then). In it,
   the machine's own resource-level setting beats its scale set's, which beats the
   subscription's; a resource-level row marked `inherited` is no setting of its own.
3. `earliest_snapshot`: for a day before the first snapshot of the subscription, that first
   snapshot, assumed in force back to its `enablementTime` (with a single snapshot, this is the
   latest snapshot too).

A Standard setting covers a day only from the UTC day of its `enablementTime`: days before the
plan's enablement are not covered (no price, no finding). A machine-day whose subscription has
no pricings snapshot at all has no evidence but its charges (`plan_source` null when none).

Free trial (billing.FREE_TRIAL_DAYS): a subscription's snapshot reports
`freeTrialRemainingTime`; the trial ends at the snapshot time plus what remains (the latest such
end over the snapshots). A covered day any part of which lies before that end is a trial day:
covered, and priced at 0.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import polars as pl

from transforms import billing
from transforms.contract import conform_view, view_schema
from transforms.machines import pricing_setting, resource_id, scale_set_id_of


def _pricing_rows(pricings: pl.LazyFrame) -> pl.LazyFrame:
    """Pricings rows normalised: ids lower-cased, `setting` P1 / P2 / off, `own` (a level's
    setting of its own: subscription rows, and resource rows not marked inherited)."""
    level = pl.col("level").str.strip_chars().str.to_lowercase()
    return pricings.select(
        "snapshot_at",
        "enablement_time",
        "free_trial_remaining",
        resource_id(),
        subscription_id=pl.col("subscription_id").str.strip_chars().str.to_lowercase(),
        is_subscription_level=(level == "subscription") | pl.col("resource_id").is_null(),
        setting=pricing_setting(),
        inherited=pl.col("inherited").fill_null(False),
    )


def _level_settings(rows: pl.LazyFrame, key: str) -> pl.LazyFrame:
    """Resource-level settings of their own, keyed by (snapshot_at, `key`)."""
    return (
        rows.filter(~pl.col("is_subscription_level") & ~pl.col("inherited"))
        .group_by("snapshot_at", "resource_id")
        .agg(pl.col("setting").max(), pl.col("enablement_time").max())
        .rename(
            {
                "resource_id": key,
                "setting": f"{key}_setting",
                "enablement_time": f"{key}_enabled_at",
            }
        )
    )


COVERAGE_SCHEMA: Final = pl.Schema(
    {
        "usage_date": pl.Date(),
        "resource_id": pl.String(),
        "subscription_id": pl.String(),
        "pricing_plan": pl.String(),
        "pricing_source": pl.String(),
        "trial": pl.Boolean(),
        "billable_hours": pl.Float64(),
    }
)


def _snapshot_validity(subscription_rows: pl.LazyFrame) -> pl.LazyFrame:
    """Each subscription snapshot with `valid_from`, the instant from which it is known to
    describe the subscription: its `enablementTime` when that falls after the previous snapshot
    (the plan was switched on then, and has held since), else the snapshot's own time.

    A subscription snapshotted Free on the 1st and Standard on the next 1st with an
    `enablementTime` of the 24th is covered from the 24th, not from the second snapshot.
    """
    snapshots = subscription_rows.group_by("subscription_id", "snapshot_at").agg(
        standard=(pl.col("setting") != "off").any(),
        enabled_at=pl.col("enablement_time").max(),
    )
    previous = pl.col("snapshot_at").shift(1).over("subscription_id")
    switched_on_since = (
        pl.col("standard")
        & (pl.col("enabled_at") < pl.col("snapshot_at"))
        & (previous.is_null() | (pl.col("enabled_at") > previous))
    )
    return snapshots.sort("subscription_id", "snapshot_at").select(
        "subscription_id",
        "snapshot_at",
        valid_from=pl.when(switched_on_since).then("enabled_at").otherwise("snapshot_at"),
    )


def _subscription_days(days: pl.LazyFrame, subscription_rows: pl.LazyFrame) -> pl.LazyFrame:
    """Per subscription and day of `days`: the snapshot in force (`snapshot_at`,
    `pricing_source`), the subscription's setting in it and when that was enabled, and the end of
    the subscription's free trial. A subscription-day is a few hundred machine-days: the as-of
    search runs on these, not on every machine."""
    day_start = pl.col("usage_date").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    subscription_days = (
        days.select("subscription_id", "usage_date")
        .unique()
        .with_columns(day_last_instant=day_start + timedelta(days=1) - timedelta(microseconds=1))
        .sort("day_last_instant")
    )
    ordered = _snapshot_validity(subscription_rows).sort("valid_from")
    chosen = (
        subscription_days.join_asof(
            ordered.select("subscription_id", "valid_from", snapshot_before="snapshot_at"),
            left_on="day_last_instant",
            right_on="valid_from",
            by="subscription_id",
            strategy="backward",
            check_sortedness=False,  # both sides are sorted above; polars cannot check per group
        )
        .join_asof(
            ordered.select("subscription_id", snapshot_after="snapshot_at"),
            left_on="day_last_instant",
            right_on="snapshot_after",
            by="subscription_id",
            strategy="forward",
            check_sortedness=False,
        )
        .with_columns(
            snapshot_at=pl.coalesce("snapshot_before", "snapshot_after"),
            pricing_source=pl.when(pl.col("snapshot_before").is_not_null())
            .then(pl.lit("pricings_history"))
            .when(pl.col("snapshot_after").is_not_null())
            .then(pl.lit("earliest_snapshot")),
        )
    )
    subscription_settings = subscription_rows.group_by("snapshot_at", "subscription_id").agg(
        subscription_setting=pl.col("setting").max(),
        subscription_enabled_at=pl.col("enablement_time").max(),
    )
    trial_end = pl.col("snapshot_at") + pl.col("free_trial_remaining")
    # A Free subscription reports the whole trial still ahead of it: only an enabled plan's
    # remaining trial is a trial.
    trials = (
        subscription_rows.filter(
            (pl.col("free_trial_remaining") > timedelta(0)) & (pl.col("setting") != "off")
        )
        .group_by("subscription_id")
        .agg(trial_ends_at=trial_end.max())
    )
    return (
        chosen.join(subscription_settings, on=["snapshot_at", "subscription_id"], how="left")
        .join(trials, on="subscription_id", how="left")
        .select(
            "subscription_id",
            "usage_date",
            "snapshot_at",
            "pricing_source",
            "subscription_setting",
            "subscription_enabled_at",
            trial=pl.col("trial_ends_at").is_not_null() & (day_start < pl.col("trial_ends_at")),
        )
    )


def _overridden_days(
    days: pl.LazyFrame, subscription_days: pl.LazyFrame, rows: pl.LazyFrame
) -> pl.LazyFrame:
    """The machine-days of machines with a setting of their own or of their scale set, with
    both settings of the snapshot in force that day. Few machines have one, so the scale-set
    id is parsed per machine and only their days are joined to the settings."""
    own = _level_settings(rows, "resource_id")
    of_scale_sets = _level_settings(rows, "scale_set_id")
    machines = (
        days.select("resource_id")
        .unique()
        .with_columns(scale_set_id=scale_set_id_of(pl.col("resource_id")))
    )
    overridden = pl.concat(
        [
            machines.join(own.select("resource_id").unique(), on="resource_id", how="semi"),
            machines.join(
                of_scale_sets.select("scale_set_id").unique(), on="scale_set_id", how="semi"
            ),
        ]
    ).unique()
    return (
        days.join(overridden, on="resource_id", how="inner")
        .join(
            subscription_days.select("subscription_id", "usage_date", "snapshot_at"),
            on=["subscription_id", "usage_date"],
            how="left",
        )
        .join(own, on=["snapshot_at", "resource_id"], how="left")
        .join(of_scale_sets, on=["snapshot_at", "scale_set_id"], how="left")
        .select(
            "usage_date",
            "resource_id",
            "resource_id_setting",
            "resource_id_enabled_at",
            "scale_set_id_setting",
            "scale_set_id_enabled_at",
        )
    )


def pricing_coverage(machine_hours_daily: pl.LazyFrame, pricings: pl.LazyFrame) -> pl.LazyFrame:
    """Per machine-day of `machine_hours_daily`: the plan the pricings history says covered it.

    Output: usage_date, resource_id, subscription_id, pricing_plan (P1 / P2, null = not
    covered), pricing_source (`pricings_history`, `earliest_snapshot`, null = no snapshot),
    trial (a covered day of the subscription's free trial), and the day's billable_hours carried
    along for `machine_days`. See the module docstring.
    """
    rows = _pricing_rows(pricings)
    days = machine_hours_daily.select(
        "usage_date", "resource_id", pl.col("subscription_id").str.to_lowercase(), "billable_hours"
    )
    subscription_days = _subscription_days(days, rows.filter(pl.col("is_subscription_level")))
    own = pl.col("resource_id_setting").is_not_null()
    of_scale_set = pl.col("scale_set_id_setting").is_not_null()
    setting = pl.coalesce("resource_id_setting", "scale_set_id_setting", "subscription_setting")
    enabled_at = (
        pl.when(own)
        .then("resource_id_enabled_at")
        .when(of_scale_set)
        .then("scale_set_id_enabled_at")
        .otherwise("subscription_enabled_at")
    )
    covers_day = setting.is_in(billing.PLANS) & (
        enabled_at.is_null() | (pl.col("usage_date") >= enabled_at.dt.date())
    )
    plan = pl.when(covers_day).then(setting)
    return (
        days.join(subscription_days, on=["subscription_id", "usage_date"], how="left")
        .join(
            _overridden_days(days, subscription_days, rows),
            on=["usage_date", "resource_id"],
            how="left",
        )
        .select(
            "usage_date",
            "resource_id",
            "subscription_id",
            pricing_plan=plan,
            pricing_source="pricing_source",
            trial=plan.is_not_null() & pl.col("trial").fill_null(False),
            billable_hours="billable_hours",
        )
    )


def machine_days(
    coverage: pl.LazyFrame, defender_charges_daily: pl.LazyFrame, currency: str
) -> pl.LazyFrame:
    """Every machine id and day it existed on (the rows of `coverage`) or was charged on (an Arc
    machine before its inventory): the day's plan evidence and what the comparisons price, in one
    join of the machine days with their charges, read by `machine_plans_daily` and
    `comparison.priced_usage` alike.

    Columns: usage_date, resource_id, subscription_id (the machine's, else the largest charged),
    plan, plan_source, trial (see `machine_plans_daily`), billable_hours (null: no power
    timeline that day), machine_subscription_id (the machine's alone, null without a timeline),
    and of the charges in `currency` only: billed_hours, billed_cost,
    charged_subscription_id (the smallest) and `charged_in_currency`. The billed plan wins (the
    one with most billed hours that day, in any currency; a tie goes to P2), else the pricings'.
    """
    in_currency = pl.col("currency") == currency.upper()
    p1_hours, p2_hours = (
        pl.col("billed_hours").filter(pl.col("plan") == plan).sum() for plan in ("P1", "P2")
    )
    has_p1, has_p2 = ((pl.col("plan") == plan).any() for plan in ("P1", "P2"))
    # Machine-days are grouped and joined by the id's dictionary code (an integer, not a
    # ~130-character id); each side keeps its id, and the two are coalesced.
    code = pl.col("resource_id").cast(pl.Categorical).to_physical().alias("code")
    billed = (
        defender_charges_daily.filter(pl.col("resource_id").is_not_null())
        .group_by("usage_date", code)
        .agg(
            billed_resource_id=pl.col("resource_id").first(),
            billed_plan=pl.when(has_p2 & (~has_p1 | (p2_hours >= p1_hours)))
            .then(pl.lit("P2"))
            .when(has_p1)
            .then(pl.lit("P1")),
            any_charged_subscription_id=pl.col("subscription_id").max(),
            charged_subscription_id=pl.col("subscription_id").filter(in_currency).min(),
            charged_in_currency=in_currency.any(),
            billed_hours=pl.col("billed_hours").filter(in_currency).sum(),
            billed_cost=pl.col("billed_cost").filter(in_currency).sum(),
        )
    )
    plan = pl.coalesce("billed_plan", "pricing_plan")
    return (
        coverage.with_columns(code)
        .join(billed, on=["usage_date", "code"], how="full", coalesce=True)
        .select(
            "usage_date",
            pl.coalesce("resource_id", "billed_resource_id").alias("resource_id"),
            pl.coalesce("subscription_id", "any_charged_subscription_id").alias("subscription_id"),
            plan=plan,
            plan_source=pl.when(pl.col("billed_plan").is_not_null())
            .then(pl.lit("billed"))
            .otherwise("pricing_source"),
            trial=pl.col("trial").fill_null(False) & plan.is_not_null(),
            billable_hours="billable_hours",
            machine_subscription_id="subscription_id",
            charged_subscription_id="charged_subscription_id",
            charged_in_currency=pl.col("charged_in_currency").fill_null(False),
            billed_hours=pl.col("billed_hours").fill_null(0.0),
            billed_cost=pl.col("billed_cost").fill_null(0.0),
        )
    )


def machine_plans_daily(machine_days: pl.LazyFrame) -> pl.LazyFrame:
    """The `machine_plans_daily` view from `machine_days`: one row per machine and day it
    existed on, plus the days a machine was charged without a power timeline (an Arc machine
    before its inventory)."""
    view = machine_days.select(view_schema("machine_plans_daily").names())
    return conform_view(view.sort("usage_date", "resource_id"), "machine_plans_daily")
