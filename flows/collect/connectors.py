"""Defender for Cloud multicloud connectors (`Microsoft.Security/securityConnectors`) of a
subscription: which AWS account or GCP project each connects, and the Defender for Servers plan
its offerings set.

AWS EC2 and GCP instances a connector protects are auto-provisioned as Arc machines and billed
like them (`flows.collect.arc`); the connector itself is never a machine. Knowing the connectors
lets a charge on a connector's id be called what it is (`billing.ATTRIBUTION_DETAILS`
`connector`) and says which clouds the estate reaches. One paged call per subscription
(`security_connectors.list`, api-version 2023-10-01-preview).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import polars as pl
import pyarrow as pa

from flows.collect.paging import follow_pages
from flows.collect.tables import arrow_table
from transforms.billing import (
    CONNECTOR_CLOUDS,
    DEFENDER_FOR_SERVERS_OFFERINGS,
    STANDARD_DEFAULT_SUB_PLAN,
    normalise_resource_id,
)
from transforms.schemas import CONNECTORS

SOURCE: Final = "security"


def sub_plan(value: Any) -> str | None:
    """An offering's sub-plan: `{"type": "P1"}` in the REST spec (2023-10-01-preview), a bare
    `"P1"` as some answers spell it."""
    if isinstance(value, Mapping):
        return value.get("type")
    return value


def connector_record(connector: Mapping[str, Any], *, subscription_id: str) -> dict[str, Any]:
    """One CONNECTORS row (no snapshot or provenance) from a connector in wire format.

    `cloud` is aws / gcp from `environmentName` (else the name lower-cased: GitHub, Azure DevOps
    connectors protect no server); `defender_plan` the sub-plan of its Defender for Servers
    offering (the full plan, P2, when the offering names none), null without one.
    """
    properties = connector.get("properties") or {}
    environment = (properties.get("environmentName") or "").strip().lower()
    plan = None
    for offering in properties.get("offerings") or ():
        if (offering.get("offeringType") or "").lower() in DEFENDER_FOR_SERVERS_OFFERINGS:
            plan = (sub_plan(offering.get("subPlan")) or STANDARD_DEFAULT_SUB_PLAN).upper()
    return {
        "subscription_id": subscription_id.lower(),
        "connector_id": normalise_resource_id(connector["id"]),
        "connector_name": connector["name"],
        "cloud": CONNECTOR_CLOUDS.get(environment, environment or None),
        "hierarchy_identifier": properties.get("hierarchyIdentifier"),
        "defender_plan": plan,
    }


def fetch_connectors(security: Any, subscription_id: str, *, origin: str) -> list[dict[str, Any]]:
    """CONNECTORS records of the subscription `security` (a SecurityCenter client) is bound to."""
    return [
        connector_record(listed.serialize(keep_readonly=True), subscription_id=subscription_id)
        for listed in follow_pages(
            security.security_connectors.list, f"{origin}: security connectors list"
        )
    ]


def connectors_table(
    records: Sequence[Mapping[str, Any]],
    *,
    snapshot_at: datetime,
    ingested_at: datetime,
    scope: str,
) -> pa.Table:
    """CONNECTORS rows for one subscription's snapshot, sorted by connector id."""
    names = [
        "subscription_id",
        "connector_id",
        "connector_name",
        "cloud",
        "hierarchy_identifier",
        "defender_plan",
    ]
    frame = pl.DataFrame(
        {name: [record[name] for record in records] for name in names},
        schema=dict.fromkeys(names, pl.String),
    ).with_columns(
        snapshot_at=pl.lit(snapshot_at, dtype=pl.Datetime("us", "UTC")),
        ingested_at=pl.lit(ingested_at, dtype=pl.Datetime("us", "UTC")),
        source=pl.lit(SOURCE),
        scope=pl.lit(scope),
    )
    return arrow_table(frame.sort("connector_id"), CONNECTORS)
