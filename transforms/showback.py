"""Showback: the Defender for Servers bill split by whose machines it was, `showback_monthly`.

A FinOps team charges the bill back by cost centre, application, resource group, subscription
or management group (`[report] group_by`, e.g. `["tag:CostCenter", "resource_group"]`). For
each group key the view has one row per month and group value, and the rows of a key add up to
every Defender for Servers charge of the month (the estate's
`fleet_comparison_monthly.billed_cost`), to the cent:

- a machine's charges (`defender_charges_daily`: on its id, and its share of subscription-level
  charges, allocated by billable hours) go to the group of the id they were attributed to;
- machines without the tag (or without a value for the key) form the group of kind `missing`,
  value null: untagged cost is a group of its own, never dropped;
- charges on no machine (`unattributed`: a workspace, a connector, a pooled charge with no
  covered machine) form the group of kind `unattributed`, except under `subscription` and
  `management_group`, where they belong to the subscription they were billed to.

Under `management_group` a subscription's group is its management group path as the latest
collection saw it (`subscriptions.management_group_path`, e.g. `Tenant Root Group /
Production`); subscriptions with no known path (never listed, or their group not readable)
form the group of kind `missing`. The management groups are the subscription rows rolled up:
each chunk computes its rows by subscription and the estate step, which reads the lake's
subscriptions, adds them up per path (`finish_showback`), so chunks need no new input. Its
`machines` is the sum of its subscriptions' counts: a machine moved between two subscriptions
of one management group counts twice there, once for each subscription it was in, as it does
under `subscription`; its hours and money count once, split between its ids.

Tags are `machines.tags` (the resource's own and its resource group's where it has none, as
Cost Management's tag inheritance applies them); a tag's name is matched without case. A VM
moved during the month counts in the groups of both its ids. The like-for-like seat option is
one seat per machine with covered billable hours (`licensing_comparison_monthly.seat_cost`) plus
its hours at the plan rate less the MDE component (`hourly_cost - mde_component_cost`): keeping
Defender for Servers and bringing an MDE seat for its MDE part, per machine (seats fixed per
quarter are an estate-wide count and cannot be split by group).

Each chunk of whole subscriptions yields its part (`showback_part`); a machine is in one chunk,
so the estate's view adds the parts (`finish_showback`), rolling the management groups' rows up
from subscriptions there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import polars as pl

from transforms.contract import conform_view, empty_view, order_free_sum
from transforms.tags import tag_value

SUBSCRIPTION: Final = "subscription"
MANAGEMENT_GROUP: Final = "management_group"
RESOURCE_GROUP: Final = "resource_group"
TAG_PREFIX: Final = "tag:"
GROUP_KINDS: Final = ("value", "missing", "unattributed")
_SUMS: Final = ("billable_hours", "billed_cost", "allocated_cost", "like_for_like_cost")


def check_group_key(key: str) -> str:
    """`key` if it names a grouping mdecost knows (`subscription`, `management_group`,
    `resource_group`, `tag:<name>`), else ValueError saying which are known."""
    if key in (SUBSCRIPTION, MANAGEMENT_GROUP, RESOURCE_GROUP):
        return key
    if key.startswith(TAG_PREFIX) and key[len(TAG_PREFIX) :].strip():
        return f"{TAG_PREFIX}{key[len(TAG_PREFIX) :].strip()}"
    raise ValueError(
        f"group_by {key!r} is not a grouping: use subscription, management_group, "
        "resource_group or tag:<tag name> (e.g. tag:CostCenter)"
    )


def _by_subscription(key: str) -> bool:
    """Whether a chunk groups `key` by subscription: `subscription` itself, and
    `management_group`, whose subscriptions the estate step rolls up (`finish_showback`)."""
    return key in (SUBSCRIPTION, MANAGEMENT_GROUP)


def _group_value(key: str) -> pl.Expr:
    if _by_subscription(key):
        return pl.col("subscription_id")
    if key == RESOURCE_GROUP:
        return pl.col("resource_group")
    return tag_value(key[len(TAG_PREFIX) :])


def _month(column: str) -> pl.Expr:
    return pl.col(column).dt.month_start().alias("month")


def showback_part(
    machines: pl.LazyFrame,
    machine_hours_daily: pl.LazyFrame,
    defender_charges_daily: pl.LazyFrame,
    licensing_comparison_monthly: pl.LazyFrame,
    group_by: Sequence[str],
    *,
    currency: str,
) -> pl.LazyFrame:
    """One chunk's rows of `showback_monthly` (see the module docstring), for each key of
    `group_by`; `finish_showback` adds the chunks' parts. Under `management_group` the rows are
    still by subscription (group_value the subscription id), for `finish_showback` to roll up."""
    if not group_by:
        return empty_view("showback_monthly")
    charges = defender_charges_daily.with_columns(_month("usage_date"))
    on_machines = (
        charges.filter(pl.col("resource_id").is_not_null())
        .group_by("month", "resource_id")
        .agg(
            billed_cost=pl.col("billed_cost").sum(),
            allocated_cost=pl.col("billed_cost").filter(pl.col("attribution") == "allocated").sum(),
        )
    )
    hours = (
        machine_hours_daily.with_columns(_month("usage_date"))
        .group_by("month", "resource_id")
        .agg(billable_hours=pl.col("billable_hours").sum())
    )
    like_for_like = licensing_comparison_monthly.select(
        "month",
        "resource_id",
        like_for_like_cost=pl.when(pl.col("mde_component_cost") > 0)
        .then(pl.col("seat_cost").fill_null(0.0))
        .otherwise(0.0)
        + pl.col("hourly_cost").fill_null(0.0)
        - pl.col("mde_component_cost").fill_null(0.0),
    )
    per_id = (
        on_machines.join(hours, on=["month", "resource_id"], how="full", coalesce=True)
        .join(like_for_like, on=["month", "resource_id"], how="full", coalesce=True)
        .with_columns(pl.col(name).fill_null(0.0) for name in _SUMS)
        .join(
            machines.select(
                "resource_id", "machine_key", "subscription_id", "resource_group", "tags"
            ),
            on="resource_id",
            how="left",
        )
        .with_columns(
            machine_key=pl.coalesce("machine_key", "resource_id"),
            active=(pl.col("billable_hours") > 0) | (pl.col("billed_cost") != 0),
        )
    )
    unattributed = (
        charges.filter(pl.col("resource_id").is_null())
        .group_by("month", "subscription_id")
        .agg(billed_cost=pl.col("billed_cost").sum())
    )
    parts = []
    for key in group_by:
        value = _group_value(key)
        grouped = per_id.with_columns(group_value=value).with_columns(
            group_kind=pl.when(pl.col("group_value").is_null())
            .then(pl.lit("missing"))
            .otherwise(pl.lit("value"))
        )
        if _by_subscription(key):
            stray = unattributed.select(
                "month", "billed_cost", group_value="subscription_id", group_kind=pl.lit("value")
            )
        else:
            stray = unattributed.select(
                "month",
                "billed_cost",
                group_value=pl.lit(None, dtype=pl.String),
                group_kind=pl.lit("unattributed"),
            )
        stray = stray.with_columns(
            machine_key=pl.lit(None, dtype=pl.String),
            active=pl.lit(False),
            billable_hours=pl.lit(0.0),
            allocated_cost=pl.lit(0.0),
            like_for_like_cost=pl.lit(0.0),
        )
        columns = ["month", "group_kind", "group_value", "machine_key", "active", *_SUMS]
        parts.append(
            pl.concat([grouped.select(columns), stray.select(columns)])
            .group_by("month", "group_kind", "group_value")
            .agg(
                machines=pl.col("machine_key").filter(pl.col("active")).n_unique().cast(pl.Int64),
                **{name: pl.col(name).sum() for name in _SUMS},
            )
            .with_columns(group_key=pl.lit(key))
        )
    return conform_view(
        pl.concat(parts).with_columns(currency=pl.lit(currency.upper())), "showback_monthly"
    )


def finish_showback(parts: pl.LazyFrame, subscriptions: pl.LazyFrame) -> pl.LazyFrame:
    """`showback_monthly` of the estate: the chunks' parts added up (a machine is in one
    chunk, so its count adds too), the `management_group` rows rolled up from their
    subscriptions to the management group paths of `subscriptions` (one row per subscription:
    subscription_id, management_group_path, as the warehouse's `subscriptions`); a subscription
    it has no path for is in the group of kind `missing`."""
    by_management_group = pl.col("group_key") == MANAGEMENT_GROUP
    paths = subscriptions.select("subscription_id", "management_group_path")
    rolled_up = (
        parts.with_columns(subscription_id=pl.when(by_management_group).then(pl.col("group_value")))
        .join(paths, on="subscription_id", how="left")
        .with_columns(
            group_kind=pl.when(~by_management_group)
            .then(pl.col("group_kind"))
            .when((pl.col("group_kind") == "value") & pl.col("management_group_path").is_not_null())
            .then(pl.lit("value"))
            .otherwise(pl.lit("missing")),
            group_value=pl.when(by_management_group)
            .then(pl.col("management_group_path"))
            .otherwise(pl.col("group_value")),
        )
    )
    return conform_view(
        rolled_up.group_by("month", "group_key", "group_kind", "group_value", "currency")
        .agg(pl.col("machines").sum(), *(order_free_sum(name) for name in _SUMS))
        .sort("month", "group_key", "group_kind", "group_value", nulls_last=True),
        "showback_monthly",
    )
