"""Defender for Servers plan: the subscription's `VirtualMachines` pricing, each scale set's
and each machine's.

`Microsoft.Security/pricings/VirtualMachines` at subscription scope gives the plan (pricingTier
Free/Standard, subPlan P1/P2). Per resource, the same pricing read at its id says whether it
inherits or overrides (`inherited`, `inheritedFrom`; booleans may arrive as the strings
"True"/"False"). Resource-level settings exist on VMs, scale sets and Arc machines (Learn: REST
defenderforcloud/pricings, "supported resources are VirtualMachines, VMSS and ARC Machines"),
so scale sets are read too: a set's own setting covers its instances, which then report it as
inherited from the set. There is no bulk read of resource-level pricings, so that is one call
per resource, made inside the subscription's one task. A resource for which the service answers
404 (no resource-level pricing there) simply has no row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import isodate
import polars as pl
import pyarrow as pa
from azure.core.exceptions import ResourceNotFoundError

from flows.collect.tables import arrow_table
from transforms.billing import normalise_resource_id
from transforms.schemas import PRICINGS

SOURCE: Final = "security"
PRICING_NAME: Final = "VirtualMachines"
_TIMESTAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%S%.f%#z"
_SORT_KEYS: Final = ["level", "resource_id", "pricing_id"]


def flag(value: Any) -> bool | None:
    """A boolean that Security may send as a JSON boolean or as the string "True"/"False"."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise ValueError(f"expected True or False, got {value!r}")


def pricing_record(
    pricing: Mapping[str, Any], *, subscription_id: str, resource_id: str | None
) -> dict[str, Any]:
    """One PRICINGS row (no snapshot or provenance) from a pricing in wire format.

    `resource_id` None means the subscription-level pricing.
    """
    properties = pricing.get("properties") or {}
    return {
        "subscription_id": subscription_id.lower(),
        "pricing_id": normalise_resource_id(pricing["id"]),
        "level": "subscription" if resource_id is None else "resource",
        "resource_id": normalise_resource_id(resource_id),
        "pricing_tier": properties.get("pricingTier"),
        "sub_plan": properties.get("subPlan"),
        "inherited": flag(properties.get("inherited")),
        "inherited_from": normalise_resource_id(properties.get("inheritedFrom")),
        "enablement_time": properties.get("enablementTime"),
        "free_trial_remaining": trial_remaining(properties.get("freeTrialRemainingTime")),
    }


def trial_remaining(value: Any) -> timedelta | None:
    """`freeTrialRemainingTime`, an ISO 8601 duration on the wire ("P29DT23H", "PT0S")."""
    if value is None or value == "":
        return None
    if isinstance(value, timedelta):
        return value
    try:
        duration = isodate.parse_duration(str(value))
    except isodate.ISO8601Error as error:
        raise ValueError(f"freeTrialRemainingTime {value!r} is not an ISO 8601 duration") from error
    if not isinstance(duration, timedelta):  # years or months: no fixed length
        raise ValueError(f"freeTrialRemainingTime {value!r} is not a duration in days or less")
    return duration


def pricings_table(
    records: Sequence[Mapping[str, Any]],
    *,
    snapshot_at: datetime,
    ingested_at: datetime,
    scope: str,
) -> pa.Table:
    """PRICINGS rows of one subscription's snapshot: subscription first, then machines by id."""
    strings = [
        "subscription_id",
        "pricing_id",
        "level",
        "resource_id",
        "pricing_tier",
        "sub_plan",
        "inherited_from",
        "enablement_time",
    ]
    frame = pl.DataFrame(
        {
            name: [record[name] for record in records]
            for name in [*strings, "inherited", "free_trial_remaining"]
        },
        schema={
            **{name: pl.String for name in strings},
            "inherited": pl.Boolean,
            "free_trial_remaining": pl.Duration("us"),
        },
    )
    frame = frame.with_columns(
        enablement_time=pl.col("enablement_time").str.to_datetime(
            _TIMESTAMP_FORMAT, time_unit="us", time_zone="UTC"
        ),
        snapshot_at=pl.lit(snapshot_at, dtype=pl.Datetime("us", "UTC")),
        ingested_at=pl.lit(ingested_at, dtype=pl.Datetime("us", "UTC")),
        source=pl.lit(SOURCE),
        scope=pl.lit(scope),
    ).sort(_SORT_KEYS, descending=[True, False, False], nulls_last=[False, False, False])
    return arrow_table(frame, PRICINGS)


@dataclass
class PricingsFetch:
    records: list[dict[str, Any]] = field(default_factory=list)
    without_resource_pricing: int = 0


def _wire(model: Any) -> dict[str, Any]:
    """An msrest model back in wire format (read-only fields included)."""
    return model.serialize(keep_readonly=True)


def fetch_pricings(
    security: Any,
    subscription_id: str,
    resource_ids: Iterable[str],
    log: logging.Logger | logging.LoggerAdapter,
) -> PricingsFetch:
    """The subscription's VirtualMachines pricing and each of `resource_ids`' (SecurityCenter):
    machines and scale sets alike, at level "resource"."""
    fetched = PricingsFetch()
    subscription = security.pricings.get(
        scope_id=f"subscriptions/{subscription_id}", pricing_name=PRICING_NAME
    )
    fetched.records.append(
        pricing_record(_wire(subscription), subscription_id=subscription_id, resource_id=None)
    )
    for resource_id in resource_ids:
        try:
            pricing = security.pricings.get(
                scope_id=resource_id.lstrip("/"), pricing_name=PRICING_NAME
            )
        except ResourceNotFoundError:
            fetched.without_resource_pricing += 1
            continue
        fetched.records.append(
            pricing_record(_wire(pricing), subscription_id=subscription_id, resource_id=resource_id)
        )
    if fetched.without_resource_pricing:
        log.info(
            "subscription %s: %d resource(s) without a resource-level pricing (404)",
            subscription_id,
            fetched.without_resource_pricing,
        )
    return fetched
