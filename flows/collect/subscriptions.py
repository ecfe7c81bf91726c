"""Subscription names and management group paths, so people read names and joins use GUIDs.

`GET /subscriptions` lists each subscription the credential reads with its display name, state
and tenant. Management group paths come from the Management Groups API where the credential may
read it (`GET .../managementGroups`, then each group's `descendants`, whose items name their
parent); where it may not (403), the path is left null rather than guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import pyarrow as pa
from azure.core.exceptions import HttpResponseError
from azure.mgmt.costmanagement import CostManagementClient
from azure.mgmt.resource.subscriptions import SubscriptionClient

from flows.collect.discovery import MANAGEMENT_GROUPS_API_VERSION, listing
from flows.collect.paging import follow_pages
from flows.collect.scopes import unreadable_reason
from transforms.schemas import SUBSCRIPTIONS

SOURCE = "subscriptions"
PATH_SEPARATOR = " / "


def group_paths(client: CostManagementClient, arm_endpoint: str) -> dict[str, str]:
    """Subscription id (lower-cased) -> its management group path, root first; {} if unreadable."""
    base = arm_endpoint.rstrip("/")
    names: dict[str, str] = {}
    parents: dict[str, str] = {}
    try:
        groups = list(
            listing(
                client,
                f"{base}/providers/Microsoft.Management/managementGroups"
                f"?api-version={MANAGEMENT_GROUPS_API_VERSION}",
                "management groups",
            )
        )
        for group in groups:
            names[group["id"].lower()] = (group.get("properties") or {}).get(
                "displayName"
            ) or group["name"]
        for group in groups:
            for item in listing(
                client,
                f"{base}{group['id']}/descendants?api-version={MANAGEMENT_GROUPS_API_VERSION}",
                f"descendants of {group['id']}",
            ):
                properties = item.get("properties") or {}
                parent = (properties.get("parent") or {}).get("id")
                if parent:
                    parents[item["id"].lower()] = parent.lower()
                if item.get("type", "").endswith("managementGroups"):
                    names.setdefault(
                        item["id"].lower(), properties.get("displayName") or item["name"]
                    )
    except HttpResponseError as error:
        if unreadable_reason(error) is None:
            raise
        return {}
    paths: dict[str, str] = {}
    for member, above in parents.items():
        if not member.startswith("/subscriptions/"):
            continue
        chain: list[str] = []
        while above and above not in chain:
            chain.append(above)
            above = parents.get(above, "")
        paths[member.removeprefix("/subscriptions/")] = PATH_SEPARATOR.join(
            names.get(group, group.rsplit("/", 1)[-1]) for group in reversed(chain)
        )
    return paths


def fetch_subscriptions(subscriptions: SubscriptionClient) -> list[dict[str, Any]]:
    """Every subscription the credential reads, in the wire format's names (`subscriptionId`)."""
    return [
        item.as_dict()
        for item in follow_pages(subscriptions.subscriptions.list, "subscription names")
    ]


def subscriptions_table(
    listed: Iterable[Mapping[str, Any]],
    paths: Mapping[str, str],
    *,
    snapshot_at: datetime,
    ingested_at: datetime,
) -> pa.Table:
    rows = [
        {
            "snapshot_at": snapshot_at,
            "subscription_id": str(item["subscriptionId"]).lower(),
            "display_name": item.get("displayName"),
            "state": item.get("state"),
            "tenant_id": (item.get("tenantId") or "").lower() or None,
            "management_group_path": paths.get(str(item["subscriptionId"]).lower()),
            "ingested_at": ingested_at,
            "source": SOURCE,
            "scope": "/subscriptions",
        }
        for item in listed
        if item.get("subscriptionId")
    ]
    return pa.Table.from_pylist(rows, schema=SUBSCRIPTIONS)
