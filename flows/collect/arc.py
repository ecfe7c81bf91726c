"""Azure Arc machines: every `Microsoft.HybridCompute/machines` of a subscription, as inventory.

Servers outside Azure (on premises, and AWS EC2 / GCP instances auto-provisioned by a Defender
for Cloud multicloud connector) are Arc machines, billed by Defender for Servers while Connected
(`billing.ARC_BILLABLE_STATES`). Calls per subscription (one task per scope, never per machine):
- `machines.list_by_subscription()`: every Arc machine, paged with nextLinks (`paging`), each
  with its `status` (Connected, Disconnected, Error, Expired), `lastStatusChange` (when that
  status began), OS, `cloudMetadata.provider` / `detectedProperties.cloudprovider` (AWS, GCP,
  N/A), tags and `systemData.createdAt`.
- `machine_extensions.list(group, machine)` per machine: the MDE.Windows / MDE.Linux extension
  (publisher `Microsoft.Azure.AzureDefenderForServers`). One call per machine, as for a VM whose
  listing lacks its extensions: Hybrid Compute has no bulk extension API.

The Activity Log has no heartbeats: the status timeline is rebuilt from the snapshots the daily
refresh accumulates and each one's `lastStatusChange` (`transforms.power`). Pure functions shape
the wire-format JSON (as in the REST spec examples); `fetch_arc_machines` is the only one that
talks to Azure.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final

from azure.core.exceptions import ResourceNotFoundError

from flows.collect.inventory import machine_common, mde_extension_type, resource_group_of
from flows.collect.paging import follow_pages
from transforms.billing import ARC_DEFAULT_PROVIDER, ARC_PROVIDER_NAMES

# Hybrid Compute spells the OS `windows` / `linux`; Compute (and the `machines` view) `Windows`
# / `Linux`.
_OS_TYPES: Final = {"windows": "Windows", "linux": "Linux"}


def arc_provider(properties: Mapping[str, Any]) -> str:
    """Where an Arc machine runs (`billing.PROVIDERS`): `cloudMetadata.provider`, else
    `detectedProperties.cloudprovider`; `N/A` or anything unknown is on premises."""
    named = [
        (properties.get("cloudMetadata") or {}).get("provider"),
        (properties.get("detectedProperties") or {}).get("cloudprovider"),
    ]
    for name in named:
        provider = ARC_PROVIDER_NAMES.get((name or "").strip().lower())
        if provider:
            return provider
    return ARC_DEFAULT_PROVIDER


def arc_record(
    machine: Mapping[str, Any], *, subscription_id: str, extensions: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """One INVENTORY row (no snapshot or provenance) for an Arc machine in wire format.

    `power_state` is the lower-cased status (connected, disconnected, error, expired) and
    `status_changed_at` its `lastStatusChange`; `size` is null (Arc reports none).
    """
    properties = machine.get("properties") or {}
    extension_type = mde_extension_type(extensions)
    status = properties.get("status")
    return {
        **machine_common(machine, subscription_id),
        "machine_kind": "arc",
        "vm_id": properties.get("vmId"),
        "scale_set_name": None,
        "size": None,
        "os_type": _OS_TYPES.get(
            (properties.get("osType") or "").lower(), properties.get("osType")
        ),
        "created_at": (machine.get("systemData") or {}).get("createdAt"),
        "power_state": status.lower() if status else None,
        "mde_sensor": extension_type is not None,
        "mde_extension_type": extension_type,
        "provider": arc_provider(properties),
        "status_changed_at": properties.get("lastStatusChange"),
    }


def fetch_arc_machines(
    hybrid: Any,
    subscription_id: str,
    log: logging.Logger | logging.LoggerAdapter,
    *,
    origin: str,
) -> list[dict[str, Any]]:
    """INVENTORY records of every Arc machine of the subscription `hybrid` (a
    HybridComputeManagementClient) is bound to. A machine deleted between the list and its
    extensions call (404) is left out: it no longer exists."""
    records = []
    gone = []
    listing = hybrid.machines.list_by_subscription
    for listed in follow_pages(listing, f"{origin}: Arc machines list"):
        machine = listed.as_dict()
        group, name = resource_group_of(machine["id"]), machine["name"]
        try:
            extensions = [
                extension.as_dict() for extension in hybrid.machine_extensions.list(group, name)
            ]
        except ResourceNotFoundError:
            gone.append(machine["id"])
            continue
        records.append(arc_record(machine, subscription_id=subscription_id, extensions=extensions))
    if records:
        log.info(
            "subscription %s: %d Arc machine(s), one extension list each (no bulk API)",
            subscription_id,
            len(records),
        )
    if gone:
        log.info("subscription %s: Arc machines deleted while listed: %s", subscription_id, gone)
    return records
