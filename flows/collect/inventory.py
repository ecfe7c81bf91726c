"""Inventory snapshot: every VM and scale-set VM of a subscription, as Compute reports it now.

Calls per subscription (DESIGN: one task per scope, never per VM):
- `virtual_machines.list_all(status_only="true")`: every VM with its instance view (power state)
  in one paged call. A VM listed without an instance view gets one `instance_view` call.
- `virtual_machine_scale_sets.list_all()`, then per scale set
  `virtual_machine_scale_set_vms.list(expand="instanceView")`: instances with their power state.
- The three lists page with nextLinks; `paging.follow_pages` follows them through the SDK's own
  pager and refuses a listing that makes no progress (a repeated link, endless empty pages).
- MDE sensor: a VM's `resources` (its extensions) are used when the list carries their
  `properties.type`; otherwise `virtual_machine_extensions.list` is called for that VM. That is
  one call per VM, accepted because Compute has no bulk extension API (Resource Graph would be
  one, but it is another service and permission). A scale-set instance uses its own `resources`
  when they carry types; otherwise (no per-instance call: instances can number thousands) any
  of these shows the sensor: the instance view's extensions (`<publisher>.<type>`, reported
  while the instance runs), the scale set's extension profile, or an extension id named
  `MDE.Windows`/`MDE.Linux` (the name Defender for Cloud gives the extensions it deploys).

Pure functions turn the wire-format JSON (as in the REST specs) into INVENTORY rows; `fetch_*`
are the only functions that talk to Azure.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Final

import polars as pl
import pyarrow as pa
from azure.core.exceptions import ResourceNotFoundError

from flows.collect.paging import follow_pages
from flows.collect.tables import arrow_table
from transforms.billing import MDE_EXTENSION_PUBLISHER, MDE_EXTENSION_TYPES, normalise_resource_id
from transforms.schemas import INVENTORY

SOURCE: Final = "compute"
ARC_SOURCE: Final = "hybridcompute"
AZURE_PROVIDER: Final = "azure"
POWER_STATE_PREFIX: Final = "PowerState/"
_RESOURCE_GROUP: Final = re.compile(r"/resourceGroups/([^/]+)/", re.IGNORECASE)
_TIMESTAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%S%.f%#z"


def resource_group_of(resource_id: str) -> str:
    """The resource group segment of an ARM id, in the id's own spelling (ARM calls need it)."""
    found = _RESOURCE_GROUP.search(resource_id)
    if not found:
        raise ValueError(f"{resource_id!r} has no /resourceGroups/<name>/ segment")
    return found.group(1)


def power_state(statuses: Sequence[Mapping[str, Any]] | None) -> str | None:
    """`PowerState/<state>` among instance-view statuses -> `<state>` lower-cased, else None."""
    for status in statuses or ():
        code = status.get("code") or ""
        if code.startswith(POWER_STATE_PREFIX):
            return code[len(POWER_STATE_PREFIX) :].lower()
    return None


def _extension_identity(extension: Mapping[str, Any]) -> tuple[str | None, str | None]:
    properties = extension.get("properties") or {}
    return properties.get("publisher"), properties.get("type")


def listed_extensions(item: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    """A listed VM's `resources` when they say what each extension is, else None (unknown).

    Azure may list only extension ids; the name is the deployer's choice, so an id alone cannot
    tell an MDE extension apart - only `properties.publisher`/`type` can. An empty list is known.
    """
    resources = item.get("resources")
    if resources is None:
        return None
    if all(_extension_identity(resource)[1] for resource in resources):
        return list(resources)
    return None


def mde_extension_type(extensions: Iterable[Mapping[str, Any]]) -> str | None:
    """`MDE.Windows` / `MDE.Linux` when an extension of the Defender publisher is among them."""
    for extension in extensions:
        publisher, extension_type = _extension_identity(extension)
        if (
            publisher
            and publisher.lower() == MDE_EXTENSION_PUBLISHER.lower()
            and extension_type in MDE_EXTENSION_TYPES
        ):
            return extension_type
    return None


def mde_in_instance_view(view: Mapping[str, Any] | None) -> str | None:
    """The MDE extension type among an instance view's extensions (`type` is
    `<publisher>.<type>` there, e.g. `Microsoft.Azure.AzureDefenderForServers.MDE.Linux`)."""
    for extension in (view or {}).get("extensions") or ():
        full_type = (extension.get("type") or "").lower()
        for extension_type in MDE_EXTENSION_TYPES:
            if full_type == f"{MDE_EXTENSION_PUBLISHER}.{extension_type}".lower():
                return extension_type
    return None


def mde_in_extension_ids(resources: Iterable[Mapping[str, Any]] | None) -> str | None:
    """The MDE extension type named by an extension id's last segment (`.../extensions/MDE.Linux`):
    the name Defender for Cloud deploys it under. Weaker evidence than publisher and type."""
    for resource in resources or ():
        name = (resource.get("id") or "").rstrip("/").rsplit("/", 1)[-1]
        if name in MDE_EXTENSION_TYPES:
            return name
    return None


def _os_type(properties: Mapping[str, Any]) -> str | None:
    return ((properties.get("storageProfile") or {}).get("osDisk") or {}).get("osType")


def _tags(item: Mapping[str, Any]) -> str:
    return json.dumps(item.get("tags") or {}, sort_keys=True, ensure_ascii=False)


def machine_common(item: Mapping[str, Any], subscription_id: str) -> dict[str, Any]:
    """The INVENTORY fields every kind of machine (VM, scale-set VM, Arc) spells the same way."""
    resource_id = item["id"]
    return {
        "resource_id": normalise_resource_id(resource_id),
        "subscription_id": subscription_id.lower(),
        "resource_group": resource_group_of(resource_id).lower(),
        "machine_name": item["name"],
        "location": item.get("location"),
        "tags": _tags(item),
    }


def vm_record(
    vm: Mapping[str, Any],
    *,
    subscription_id: str,
    extensions: Iterable[Mapping[str, Any]],
    instance_view: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One INVENTORY row (no snapshot or provenance) for a VM in wire format.

    `instance_view` is used when the listed VM carries none (`properties.instanceView`).
    """
    properties = vm.get("properties") or {}
    view = properties.get("instanceView") or instance_view or {}
    extension_type = mde_extension_type(extensions)
    return {
        **machine_common(vm, subscription_id),
        "machine_kind": "vm",
        "vm_id": properties.get("vmId"),
        "scale_set_name": None,
        "size": (properties.get("hardwareProfile") or {}).get("vmSize"),
        "os_type": _os_type(properties),
        "created_at": properties.get("timeCreated"),
        "power_state": power_state(view.get("statuses")),
        "mde_sensor": extension_type is not None,
        "mde_extension_type": extension_type,
        "provider": AZURE_PROVIDER,
        "status_changed_at": None,
    }


def scale_set_extensions(scale_set: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The extensions of a scale set's VM model (`virtualMachineProfile.extensionProfile`)."""
    profile = (scale_set.get("properties") or {}).get("virtualMachineProfile") or {}
    return list((profile.get("extensionProfile") or {}).get("extensions") or [])


def scale_set_instance_record(
    instance: Mapping[str, Any], *, scale_set: Mapping[str, Any], subscription_id: str
) -> dict[str, Any]:
    """One INVENTORY row for a scale-set VM (wire format, listed with `$expand=instanceView`).

    Size and OS come from the instance, else from the scale set's model; tags are the scale
    set's with the instance's own over them.
    """
    properties = instance.get("properties") or {}
    set_properties = scale_set.get("properties") or {}
    set_profile = set_properties.get("virtualMachineProfile") or {}
    extensions = listed_extensions(instance)
    if extensions is not None:
        extension_type = mde_extension_type(extensions)
    else:
        extension_type = (
            mde_in_instance_view(properties.get("instanceView"))
            or mde_extension_type(scale_set_extensions(scale_set))
            or mde_in_extension_ids(instance.get("resources"))
        )
    size = (
        (instance.get("sku") or {}).get("name")
        or (properties.get("hardwareProfile") or {}).get("vmSize")
        or (scale_set.get("sku") or {}).get("name")
    )
    # Cost Management bills a scale set's instances on the set's id, with the set's tags: an
    # instance carries them, with its own (if Compute lists any) over them.
    tags = {**(scale_set.get("tags") or {}), **(instance.get("tags") or {})}
    return {
        **machine_common({**instance, "tags": tags}, subscription_id),
        "machine_kind": "vmss_instance",
        "vm_id": properties.get("vmId"),
        "scale_set_name": scale_set["name"],
        "size": size,
        "os_type": _os_type(properties) or _os_type(set_profile),
        "created_at": properties.get("timeCreated"),
        "power_state": power_state((properties.get("instanceView") or {}).get("statuses")),
        "mde_sensor": extension_type is not None,
        "mde_extension_type": extension_type,
        "provider": AZURE_PROVIDER,
        "status_changed_at": None,
    }


def inventory_table(
    records: Sequence[Mapping[str, Any]],
    *,
    snapshot_at: datetime,
    ingested_at: datetime,
    scope: str,
    resource_group_tags: Mapping[str, str] | None = None,
    tenant_id: str | None = None,
) -> pa.Table:
    """INVENTORY rows for one subscription's snapshot (VMs, scale-set VMs and Arc machines),
    sorted by resource id.

    `resource_group_tags`: each resource group's tags (lower-cased name -> JSON object, as
    `fetch_resource_group_tags` gives them), set beside each machine of the group.
    `tenant_id`: the Entra tenant the snapshot was read in (lower-cased; null when unknown).
    """
    times = ("created_at", "status_changed_at")
    group_tags = resource_group_tags or {}
    records = [
        {**record, "resource_group_tags": group_tags.get(record["resource_group"])}
        for record in records
    ]
    names = [
        name
        for name in INVENTORY.names
        if name not in ("snapshot_at", "tenant_id", "ingested_at", "source", "scope", *times)
    ]
    frame = pl.DataFrame(
        {name: [record[name] for record in records] for name in [*names, *times]},
        schema={
            **{name: pl.String for name in [*names, *times]},
            "mde_sensor": pl.Boolean,
        },
    )
    frame = frame.with_columns(
        *(
            pl.col(name).str.to_datetime(_TIMESTAMP_FORMAT, time_unit="us", time_zone="UTC")
            for name in times
        ),
        snapshot_at=pl.lit(snapshot_at, dtype=pl.Datetime("us", "UTC")),
        tenant_id=pl.lit(tenant_id.lower() if tenant_id else None, dtype=pl.String),
        ingested_at=pl.lit(ingested_at, dtype=pl.Datetime("us", "UTC")),
        source=pl.when(pl.col("machine_kind") == "arc")
        .then(pl.lit(ARC_SOURCE))
        .otherwise(pl.lit(SOURCE)),
        scope=pl.lit(scope),
    ).sort("resource_id")
    return arrow_table(frame, INVENTORY)


def fetch_resource_group_tags(resources: Any, *, origin: str) -> dict[str, str]:
    """Each resource group's tags in the subscription `resources` (a ResourceManagementClient)
    is bound to: lower-cased group name -> tags as a JSON object. One paged call
    (`GET /subscriptions/{id}/resourcegroups`); Cost Management's tag inheritance applies these
    to the usage of the machines in the group that lack them (`transforms.tags`)."""
    return {
        group["name"].lower(): _tags(group)
        for group in (
            listed.as_dict()
            for listed in follow_pages(resources.resource_groups.list, f"{origin}: resource groups")
        )
    }


@dataclass
class InventoryFetch:
    """What one subscription's Compute listing gave, and how many per-VM calls it needed."""

    records: list[dict[str, Any]] = field(default_factory=list)
    scale_set_ids: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    extension_calls: int = 0
    instance_view_calls: int = 0

    @property
    def machine_ids(self) -> list[str]:
        return [record["resource_id"] for record in self.records]

    @property
    def pricing_resource_ids(self) -> list[str]:
        """Every id a resource-level Defender setting may sit on: each scale set (its setting
        covers its instances unless one has its own) and each machine."""
        return [*self.scale_set_ids, *self.machine_ids]


def fetch_inventory(
    compute: Any,
    subscription_id: str,
    log: logging.Logger | logging.LoggerAdapter,
    *,
    origin: str,
) -> InventoryFetch:
    """List every VM and scale-set VM of the subscription `compute` (a ComputeManagementClient)
    is bound to.

    A VM or scale set deleted between the list and the follow-up call (404) is left out of the
    snapshot: it no longer exists, and its deletion is in the Activity Log. A listing whose
    nextLinks make no progress raises `paging.EndlessPaging` naming `origin` (scope and
    snapshot) and the listing.
    """
    fetched = InventoryFetch()
    list_vms = partial(compute.virtual_machines.list_all, status_only="true")
    for listed in follow_pages(list_vms, f"{origin}: virtual machines list"):
        vm = listed.as_dict()
        group, name = resource_group_of(vm["id"]), vm["name"]
        extensions = listed_extensions(vm)
        instance_view = None
        try:
            if extensions is None:
                fetched.extension_calls += 1
                answer = compute.virtual_machine_extensions.list(group, name)
                extensions = [extension.as_dict() for extension in answer.value or []]
            if not (vm.get("properties") or {}).get("instanceView"):
                fetched.instance_view_calls += 1
                instance_view = compute.virtual_machines.instance_view(group, name).as_dict()
        except ResourceNotFoundError:
            fetched.gone.append(vm["id"])
            continue
        fetched.records.append(
            vm_record(
                vm,
                subscription_id=subscription_id,
                extensions=extensions,
                instance_view=instance_view,
            )
        )
    list_sets = compute.virtual_machine_scale_sets.list_all
    for listed_set in follow_pages(list_sets, f"{origin}: scale sets list"):
        scale_set = listed_set.as_dict()
        list_instances = partial(
            compute.virtual_machine_scale_set_vms.list,
            resource_group_of(scale_set["id"]),
            scale_set["name"],
            expand="instanceView",
        )
        instances = follow_pages(
            list_instances, f"{origin}: instances list of scale set {scale_set['name']}"
        )
        try:
            records = [
                scale_set_instance_record(
                    instance.as_dict(), scale_set=scale_set, subscription_id=subscription_id
                )
                for instance in instances
            ]
        except ResourceNotFoundError:
            fetched.gone.append(scale_set["id"])
            continue
        fetched.scale_set_ids.append(scale_set["id"])
        fetched.records.extend(records)
    if fetched.extension_calls or fetched.instance_view_calls:
        log.info(
            "subscription %s: %d per-VM extension list(s), %d instance view(s) (no bulk API)",
            subscription_id,
            fetched.extension_calls,
            fetched.instance_view_calls,
        )
    if fetched.gone:
        log.info("subscription %s: deleted while listed: %s", subscription_id, fetched.gone)
    return fetched
