"""Azure's JSON shapes for the simulated resources, following the REST spec examples.

Each function renders one resource as Azure Resource Manager does (field names, nesting, value
types; see tests/fixtures/specs for the examples they are checked against). Rendering is the
server's I/O edge: it runs per resource on a page of results, never over the whole estate.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flows.simulator.model import (
    ARC_CLOUD_NAMES,
    ConnectorSpec,
    MachineSpec,
    ScaleSetSpec,
    SubscriptionSpec,
)
from flows.simulator.plans import Pricing
from transforms.billing import MDE_EXTENSION_PUBLISHER

_DOTNET_EPOCH_TICKS = 621_355_968_000_000_000

_POWER_DISPLAY = {
    "running": "VM running",
    "starting": "VM starting",
    "stopping": "VM stopping",
    "stopped": "VM stopped",
    "deallocating": "VM deallocating",
    "deallocated": "VM deallocated",
}
# Creation and deletion are provisioning states; the power state Azure shows meanwhile is one of
# the non-billable transitional ones.
_PROVISIONING = {"creating": ("Creating", "starting"), "deleting": ("Deleting", "deallocating")}

_IMAGES = {
    "Windows": {
        "publisher": "MicrosoftWindowsServer",
        "offer": "WindowsServer",
        "sku": "2022-datacenter-azure-edition",
        "version": "latest",
    },
    "Linux": {
        "publisher": "Canonical",
        "offer": "ubuntu-24_04-lts",
        "sku": "server",
        "version": "latest",
    },
}
_OS_NAMES = {
    "Windows": (
        "Windows Server 2022 Datacenter Azure Edition",
        "Microsoft Windows NT 10.0.20348.0",
    ),
    "Linux": ("ubuntu", "24.04"),
}
_EXTENSIONS = {
    # type: (publisher, handler version)
    "MDE.Windows": (MDE_EXTENSION_PUBLISHER, "1.0"),
    "MDE.Linux": (MDE_EXTENSION_PUBLISHER, "1.0"),
    "AzureMonitorWindowsAgent": ("Microsoft.Azure.Monitor", "1.22"),
    "AzureMonitorLinuxAgent": ("Microsoft.Azure.Monitor", "1.31"),
    "IaaSAntimalware": ("Microsoft.Azure.Security", "1.5"),
}


def timestamp(value: datetime) -> str:
    """ARM's timestamp format: seven fractional digits and `Z` (as the Monitor examples)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def offset_timestamp(value: datetime) -> str:
    """Compute's timestamp format, e.g. `2019-10-14T21:29:47.477089+00:00`."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def duration(value: timedelta) -> str:
    """An ISO 8601 duration in whole seconds, as Security writes `freeTrialRemainingTime`
    ("P19DT12H", "PT0S")."""
    days, rest = divmod(int(value.total_seconds()), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    clock = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    if not days and not clock:
        return "PT0S"
    return "P" + (f"{days}D" if days else "") + (f"T{clock}" if clock else "")


def ticks(value: datetime) -> int:
    """.NET ticks (100 ns since 0001-01-01), as in Activity Log event ids."""
    micros = int(value.timestamp()) * 1_000_000 + value.microsecond
    return _DOTNET_EPOCH_TICKS + micros * 10


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _status(code: str, display: str, when: datetime | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"code": code, "level": "Info", "displayStatus": display}
    if when is not None:
        status["time"] = offset_timestamp(when)
    return status


def power_statuses(state: str, created_at: datetime) -> list[dict[str, Any]]:
    """`ProvisioningState/...` then `PowerState/<state>`, as the instance view reports them."""
    provisioning, power = _PROVISIONING.get(state, ("Succeeded", state))
    code = provisioning.lower()
    display = "Provisioning succeeded" if code == "succeeded" else provisioning
    return [
        _status(f"ProvisioningState/{code}", display, created_at),
        _status(f"PowerState/{power}", _POWER_DISPLAY[power]),
    ]


def extension_names(machine: MachineSpec) -> list[str]:
    names = []
    if machine.mde_sensor:
        names.append("MDE.Windows" if machine.os_type == "Windows" else "MDE.Linux")
    names.extend(machine.extra_extensions)
    return names


def extension_json(machine: MachineSpec, name: str) -> dict[str, Any]:
    publisher, version = _EXTENSIONS[name]
    return {
        "name": name,
        "id": f"{machine.arm_id}/extensions/{name}",
        "type": f"{machine.resource_type}/extensions",
        "location": machine.location,
        "properties": {
            "autoUpgradeMinorVersion": True,
            "provisioningState": "Succeeded",
            "publisher": publisher,
            "type": name,
            "typeHandlerVersion": version,
            "settings": {},
        },
    }


def instance_view_json(machine: MachineSpec, state: str) -> dict[str, Any]:
    """The instance view: the guest details only while the VM runs, as Azure reports them."""
    view: dict[str, Any] = {
        "platformUpdateDomain": 0,
        "platformFaultDomain": 0,
        "hyperVGeneration": "V2",
        "isVMInStandbyPool": False,
        "disks": [
            {
                "name": f"{machine.machine_name}_OsDisk_1",
                "statuses": [
                    _status(
                        "ProvisioningState/succeeded", "Provisioning succeeded", machine.created_at
                    )
                ],
            }
        ],
        "statuses": power_statuses(state, machine.created_at),
    }
    if state == "running":
        os_name, os_version = _OS_NAMES[machine.os_type]
        names = extension_names(machine)
        ready = [_status("ProvisioningState/succeeded", "Provisioning succeeded")]
        view.update(
            {
                "computerName": machine.machine_name.replace("_", "")[:15],
                "osName": os_name,
                "osVersion": os_version,
                "vmAgent": {
                    "vmAgentVersion": "2.7.41491.1102",
                    "statuses": [
                        {
                            **_status("ProvisioningState/succeeded", "Ready", machine.created_at),
                            "message": "GuestAgent is running and accepting new configurations.",
                        }
                    ],
                    "extensionHandlers": [
                        {
                            "type": f"{_EXTENSIONS[n][0]}.{n}",
                            "typeHandlerVersion": _EXTENSIONS[n][1],
                            "status": {
                                "code": "ProvisioningState/succeeded",
                                "level": "Info",
                                "displayStatus": "Ready",
                            },
                        }
                        for n in names
                    ],
                },
                "bootDiagnostics": {
                    "consoleScreenshotBlobUri": f"https://bootdiag.blob.core.windows.net/{machine.vm_id}/screenshot.bmp",
                    "serialConsoleLogBlobUri": f"https://bootdiag.blob.core.windows.net/{machine.vm_id}/serialconsole.log",
                },
                "extensions": [
                    {
                        "name": n,
                        "type": f"{_EXTENSIONS[n][0]}.{n}",
                        "typeHandlerVersion": _EXTENSIONS[n][1],
                        "statuses": [{**ready[0], "message": "Enable succeeded"}],
                    }
                    for n in names
                ],
                "patchStatus": _patch_status(machine),
            }
        )
    return view


def _patch_status(machine: MachineSpec) -> dict[str, Any]:
    when = timestamp(machine.created_at)
    return {
        "availablePatchSummary": {
            "status": "Succeeded",
            "assessmentActivityId": machine.vm_id,
            "rebootPending": False,
            "criticalAndSecurityPatchCount": 0,
            "otherPatchCount": 2,
            "startTime": when,
            "lastModifiedTime": when,
            "error": None,
        },
        "lastPatchInstallationSummary": {
            "status": "Succeeded",
            "installationActivityId": machine.vm_id,
            "maintenanceWindowExceeded": False,
            "notSelectedPatchCount": 0,
            "excludedPatchCount": 0,
            "pendingPatchCount": 0,
            "installedPatchCount": 3,
            "failedPatchCount": 0,
            "startTime": when,
            "lastModifiedTime": when,
            "error": None,
        },
        "configurationStatuses": [
            {
                "code": "PatchModeConfigurationState/Ready",
                "level": "Info",
                "displayStatus": "Status_PatchModeConfigurationState_Ready",
                "time": when,
            }
        ],
    }


def _os_profile(machine: MachineSpec) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "computerName": machine.machine_name.replace("_", "")[:15],
        "adminUsername": "azureuser",
        "secrets": [],
        "allowExtensionOperations": True,
    }
    if machine.os_type == "Windows":
        profile["windowsConfiguration"] = {
            "provisionVMAgent": True,
            "enableAutomaticUpdates": True,
        }
    else:
        profile["linuxConfiguration"] = {
            "disablePasswordAuthentication": True,
            "provisionVMAgent": True,
        }
    return profile


def _storage_profile(machine: MachineSpec) -> dict[str, Any]:
    disk_name = f"{machine.machine_name}_OsDisk_1"
    return {
        "imageReference": dict(_IMAGES[machine.os_type]),
        "osDisk": {
            "osType": machine.os_type,
            "name": disk_name,
            "createOption": "FromImage",
            "caching": "ReadWrite",
            "managedDisk": {
                "storageAccountType": "Premium_LRS",
                "id": (
                    f"/subscriptions/{machine.subscription.subscription_id}/resourceGroups/"
                    f"{machine.resource_group}/providers/Microsoft.Compute/disks/{disk_name}"
                ),
            },
            "diskSizeGB": 127 if machine.os_type == "Windows" else 30,
        },
        "dataDisks": [],
    }


def _network_profile(machine: MachineSpec) -> dict[str, Any]:
    return {
        "networkInterfaces": [
            {
                "id": (
                    f"/subscriptions/{machine.subscription.subscription_id}/resourceGroups/"
                    f"{machine.resource_group}/providers/Microsoft.Network/networkInterfaces/"
                    f"{machine.machine_name}-nic"
                )
            }
        ]
    }


def vm_json(machine: MachineSpec, state: str, *, with_instance_view: bool) -> dict[str, Any]:
    """A virtual machine as GET / list return it (`$expand=instanceView` / `statusOnly=true`
    add `properties.instanceView`)."""
    provisioning = _PROVISIONING.get(state, ("Succeeded",))[0]
    properties: dict[str, Any] = {
        "vmId": machine.vm_id,
        "hardwareProfile": {"vmSize": machine.size},
        "storageProfile": _storage_profile(machine),
        "osProfile": _os_profile(machine),
        "networkProfile": _network_profile(machine),
        "provisioningState": provisioning,
        "timeCreated": offset_timestamp(machine.created_at),
    }
    if with_instance_view:
        properties["instanceView"] = instance_view_json(machine, state)
    return {
        "name": machine.name,
        "id": machine.arm_id,
        "type": machine.resource_type,
        "location": machine.location,
        "tags": dict(machine.tags),
        "properties": properties,
        "resources": [{"id": f"{machine.arm_id}/extensions/{n}"} for n in extension_names(machine)],
    }


def vmss_vm_json(machine: MachineSpec, state: str, *, with_instance_view: bool) -> dict[str, Any]:
    """A scale-set instance as the scale set's VM list and GET return it."""
    body = vm_json(machine, state, with_instance_view=with_instance_view)
    body["name"] = machine.machine_name
    body["instanceId"] = machine.instance_id
    body["sku"] = {"name": machine.size, "tier": "Standard"}
    body["properties"]["latestModelApplied"] = True
    return body


def vmss_json(scale_set: ScaleSetSpec, capacity: int) -> dict[str, Any]:
    return {
        "name": scale_set.name,
        "id": scale_set.arm_id,
        "type": "Microsoft.Compute/virtualMachineScaleSets",
        "location": scale_set.location,
        "tags": dict(scale_set.tags),
        "sku": {"name": scale_set.size, "tier": "Standard", "capacity": capacity},
        "properties": {
            "uniqueId": scale_set.unique_id,
            "orchestrationMode": "Uniform",
            "upgradePolicy": {"mode": "Manual"},
            "provisioningState": "Succeeded",
            "overprovision": False,
            "singlePlacementGroup": True,
            "timeCreated": offset_timestamp(scale_set.created_at),
            "virtualMachineProfile": {
                "storageProfile": {
                    "imageReference": dict(_IMAGES[scale_set.os_type]),
                    "osDisk": {
                        "osType": scale_set.os_type,
                        "createOption": "FromImage",
                        "caching": "ReadWrite",
                        "managedDisk": {"storageAccountType": "Premium_LRS"},
                    },
                },
            },
        },
    }


def resource_group_json(
    subscription: SubscriptionSpec, name: str, tags: dict[str, str]
) -> dict[str, Any]:
    """A resource group as `GET /subscriptions/{id}/resourcegroups` lists it."""
    return {
        "id": f"/subscriptions/{subscription.subscription_id}/resourceGroups/{name}",
        "name": name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": subscription.location,
        "tags": dict(tags),
        "properties": {"provisioningState": "Succeeded"},
    }


def subscription_json(subscription: SubscriptionSpec, tenant_id: str) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{subscription.subscription_id}",
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": subscription.subscription_id,
        "tenantId": tenant_id,
        "displayName": subscription.display_name,
        "state": "Enabled",
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "EnterpriseAgreement_2014-09-01",
            "spendingLimit": "Off",
        },
        "tags": {},
    }


_FRIENDLY_OPERATIONS = {
    "start/action": "Start Virtual Machine",
    "deallocate/action": "Deallocate Virtual Machine",
    "powerOff/action": "Power Off Virtual Machine",
    "restart/action": "Restart Virtual Machine",
    "write": "Create or Update Virtual Machine",
    "delete": "Delete Virtual Machine",
}
_SUB_STATUS_TEXT = {
    "Accepted": "Accepted (HTTP Status Code: 202)",
    "OK": "OK (HTTP Status Code: 200)",
    "Created": "Created (HTTP Status Code: 201)",
    "InternalServerError": "Internal Server Error (HTTP Status Code: 500)",
}


def event_json(row: dict[str, Any], tenant_id: str) -> dict[str, Any]:
    """One Activity Log event (`EventData`), from a row of the estate's event frame."""
    status = row["status"]
    operation_name = row["operation_name"]
    localized = next(
        (
            friendly
            for key, friendly in _FRIENDLY_OPERATIONS.items()
            if operation_name.endswith("/" + key)
        ),
        operation_name,
    )
    properties: dict[str, Any] = {
        "eventCategory": "Administrative",
        "entity": row["arm_id"],
        "message": operation_name,
        "hierarchy": f"{tenant_id}/{row['subscription_id']}",
    }
    if row["sub_status"]:
        properties["statusCode"] = row["sub_status"]
    if status == "Failed":
        properties["statusMessage"] = (
            '{"status":"Failed","error":{"code":"AllocationFailed","message":"Allocation failed. '
            'We do not have sufficient capacity for the requested VM size in this region."}}'
        )
    sub_status = row["sub_status"]
    return {
        "authorization": {
            "action": operation_name,
            "role": "Virtual Machine Contributor",
            "scope": row["arm_id"],
        },
        "caller": row["caller"],
        "channels": "Operation",
        "claims": {
            "aud": "https://management.core.windows.net/",
            "iss": f"https://sts.windows.net/{tenant_id}/",
            "http://schemas.microsoft.com/identity/claims/tenantid": tenant_id,
            "appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
            "ver": "1.0",
        },
        "correlationId": row["correlation_id"],
        "description": "",
        "eventDataId": row["event_data_id"],
        "eventName": (
            {"value": "BeginRequest", "localizedValue": "Begin request"}
            if status == "Started"
            else {"value": "EndRequest", "localizedValue": "End request"}
        ),
        "category": {"value": "Administrative", "localizedValue": "Administrative"},
        "httpRequest": {
            "clientRequestId": row["client_request_id"],
            "clientIpAddress": "10.20.30.40",
            "method": row["http_method"],
        },
        "id": f"{row['arm_id']}/events/{row['event_data_id']}/ticks/{ticks(row['event_at'])}",
        "level": "Error" if status == "Failed" else "Informational",
        "resourceGroupName": row["resource_group"],
        "resourceProviderName": {
            "value": row["resource_type"].split("/", 1)[0],
            "localizedValue": row["resource_type"].split("/", 1)[0],
        },
        "resourceId": row["arm_id"],
        "resourceType": {"value": row["resource_type"], "localizedValue": row["resource_type"]},
        "operationId": row["correlation_id"],
        "operationName": {"value": operation_name, "localizedValue": localized},
        "properties": properties,
        "status": {"value": status, "localizedValue": status},
        "subStatus": {"value": sub_status, "localizedValue": _SUB_STATUS_TEXT.get(sub_status, "")},
        "eventTimestamp": timestamp(row["event_at"]),
        "submissionTimestamp": timestamp(row["submission_at"]),
        "subscriptionId": row["subscription_id"],
        "tenantId": tenant_id,
    }


_OTHER_PLANS = (
    ("SqlServers", "Standard"),
    ("AppServices", "Free"),
    ("StorageAccounts", "Standard"),
    ("KeyVaults", "Free"),
    ("Arm", "Standard"),
)


def pricing_json(
    scope_id: str, pricing: Pricing, *, resource_level: bool = False
) -> dict[str, Any]:
    """`Microsoft.Security/pricings/VirtualMachines` at subscription or resource scope."""
    tier = pricing.tier
    properties: dict[str, Any] = {"pricingTier": tier}
    if pricing.sub_plan:
        properties["subPlan"] = pricing.sub_plan
    properties["freeTrialRemainingTime"] = duration(pricing.trial_remaining)
    if pricing.enablement_time is not None and tier == "Standard":
        properties["enablementTime"] = timestamp(pricing.enablement_time)
    if resource_level:
        properties["inherited"] = "True" if pricing.inherited_from else "False"
        if pricing.inherited_from:
            properties["inheritedFrom"] = pricing.inherited_from
    else:
        properties["enforce"] = "False"
        properties["resourcesCoverageStatus"] = (
            "FullyCovered" if tier == "Standard" else "NotCovered"
        )
    if tier == "Standard":
        properties["extensions"] = [
            {
                "name": "AgentlessVmScanning",
                "isEnabled": "True",
                "additionalExtensionProperties": {"ExclusionTags": "[]"},
            }
        ]
        if resource_level:
            properties["extensions"].append(
                {"name": "MdeDesignatedSubscription", "isEnabled": "False"}
            )
    return {
        "id": f"{scope_id}/providers/Microsoft.Security/pricings/VirtualMachines",
        "name": "VirtualMachines",
        "type": "Microsoft.Security/pricings",
        "properties": properties,
    }


def other_pricings_json(subscription_id: str, enabled: datetime) -> list[dict[str, Any]]:
    """The subscription's other Defender plans, listed beside VirtualMachines like Azure does."""
    return [
        {
            "id": f"/subscriptions/{subscription_id}/providers/Microsoft.Security/pricings/{name}",
            "name": name,
            "type": "Microsoft.Security/pricings",
            "properties": {
                "pricingTier": tier,
                "freeTrialRemainingTime": "PT0S",
                **({"enablementTime": timestamp(enabled)} if tier == "Standard" else {}),
                "enforce": "False",
                "resourcesCoverageStatus": "FullyCovered" if tier == "Standard" else "NotCovered",
            },
        }
        for name, tier in _OTHER_PLANS
    ]


# Hybrid Compute's status spelling of each simulated Arc status.
_ARC_STATUS = {
    "connected": "Connected",
    "disconnected": "Disconnected",
    "error": "Error",
    "expired": "Expired",
}
_ARC_HARDWARE = {
    "on_premises": ("Dell Inc.", "PowerEdge R740"),
    "aws": ("Amazon EC2", "m5.large"),
    "gcp": ("Google", "Google Compute Engine"),
}


def arc_machine_json(
    machine: MachineSpec, state: str, status_since: datetime, tenant_id: str
) -> dict[str, Any]:
    """An Azure Arc machine as `Microsoft.HybridCompute/machines` list and GET return it
    (REST spec 2024-07-10 example Machines_ListBySubscription): `status` and `lastStatusChange`
    (when that status began), the OS, `cloudMetadata.provider` and `detectedProperties`."""
    provider = machine.arc_provider or "on_premises"
    cloud = ARC_CLOUD_NAMES[provider]
    manufacturer, model = _ARC_HARDWARE[provider]
    windows = machine.os_type == "Windows"
    os_name, os_version = _OS_NAMES[machine.os_type]
    fqdn = f"{machine.name.lower()}.contoso.local"
    return {
        "id": machine.arm_id,
        "name": machine.name,
        "location": machine.location,
        "tags": dict(machine.tags),
        "identity": {"type": "SystemAssigned", "principalId": machine.vm_id, "tenantId": tenant_id},
        "type": machine.resource_type,
        "kind": "AWS" if provider == "aws" else "GCP" if provider == "gcp" else None,
        "systemData": {
            "createdBy": "arc-onboarding@contoso.com",
            "createdByType": "Application",
            "createdAt": timestamp(machine.created_at),
            "lastModifiedBy": "arc-onboarding@contoso.com",
            "lastModifiedByType": "Application",
            "lastModifiedAt": timestamp(status_since),
        },
        "properties": {
            "provisioningState": "Succeeded",
            "agentVersion": "1.48.02881.1941",
            "status": _ARC_STATUS[state],
            "lastStatusChange": timestamp(status_since),
            "errorDetails": [],
            "displayName": machine.name,
            "machineFqdn": fqdn,
            "vmUuid": machine.vm_id.upper(),
            "osSku": os_name if windows else "Ubuntu 24.04 LTS",
            "osEdition": "Datacenter" if windows else "",
            "domainName": "contoso.local",
            "adFqdn": fqdn,
            "dnsFqdn": fqdn,
            "osVersion": os_version,
            "osType": machine.os_type.lower(),
            "osName": machine.os_type.lower(),
            "osProfile": {
                "computerName": machine.name,
                "windowsConfiguration": {
                    "patchSettings": {
                        "assessmentMode": "ImageDefault",
                        "patchMode": "AutomaticByOS",
                        "enableHotpatching": False,
                        "status": {"hotpatchEnablementStatus": "Disabled", "error": None},
                    }
                },
                "linuxConfiguration": {
                    "patchSettings": {"assessmentMode": "ImageDefault", "patchMode": "ImageDefault"}
                },
            },
            "vmId": machine.vm_id,
            "locationData": {"name": "Amsterdam" if provider == "on_premises" else cloud},
            "clientPublicKey": "MIIBCgKCAQEAsimulatedkey",
            "parentClusterResourceId": None,
            "mssqlDiscovered": "true" if "sql" in machine.name.lower() else "false",
            "detectedProperties": {
                "cloudprovider": cloud,
                "manufacturer": manufacturer,
                "model": model,
            },
            "cloudMetadata": {"provider": cloud},
            "agentConfiguration": {
                "proxyUrl": "",
                "incomingConnectionsPorts": [],
                "extensionsAllowList": [],
                "extensionsBlockList": [],
                "proxyBypass": [],
                "extensionsEnabled": "true",
                "guestConfigurationEnabled": "true",
                "configMode": "full",
            },
        },
    }


def connector_json(connector: ConnectorSpec) -> dict[str, Any]:
    """A Defender for Cloud multicloud connector as `Microsoft.Security/securityConnectors` list
    returns it (REST spec 2023-10-01-preview example GetSecurityConnectorsSubscription): the
    CSPM offering, and the Defender for Servers offering with its sub-plan and Arc
    auto-provisioning (which makes the account's instances Arc machines)."""
    aws = connector.cloud == "aws"
    account = connector.hierarchy_identifier
    if aws:
        environment: dict[str, Any] = {"environmentType": "AwsAccount"}
        role = f"arn:aws:iam::{account}:role/"
        offerings: list[dict[str, Any]] = [
            {
                "offeringType": "CspmMonitorAws",
                "nativeCloudConnection": {"cloudRoleArn": f"{role}CspmMonitorAws"},
            },
            {
                "offeringType": "DefenderForServersAws",
                "defenderForServers": {
                    "cloudRoleArn": f"{role}DefenderForCloud-DefenderForServers"
                },
                "arcAutoProvisioning": {
                    "enabled": True,
                    "cloudRoleArn": f"{role}DefenderForCloud-ArcAutoProvisioning",
                },
                "subPlan": {"type": connector.plan},
            },
        ]
    else:
        environment = {
            "environmentType": "GcpProject",
            "projectDetails": {
                "projectNumber": account,
                "projectId": f"contoso-{account[-4:]}",
                "workloadIdentityPoolId": f"{account}pool",
            },
        }
        identity = {
            "workloadIdentityProviderId": "defender-for-servers",
            "serviceAccountEmailAddress": f"mdc-servers@contoso-{account[-4:]}.iam",
        }
        offerings = [
            {
                "offeringType": "CspmMonitorGcp",
                "nativeCloudConnection": {
                    "workloadIdentityProviderId": "cspm",
                    "serviceAccountEmailAddress": f"mdc-cspm@contoso-{account[-4:]}.iam",
                },
            },
            {
                "offeringType": "DefenderForServersGcp",
                "defenderForServers": identity,
                "arcAutoProvisioning": {"enabled": True},
                "subPlan": {"type": connector.plan},
            },
        ]
    return {
        "id": connector.arm_id,
        "name": connector.name,
        "type": "Microsoft.Security/securityConnectors",
        "etag": f'"{connector.hierarchy_identifier}"',
        "kind": "",
        "location": connector.subscription.location,
        "tags": {},
        "systemData": {
            "createdBy": "alice@contoso.com",
            "createdByType": "User",
            "createdAt": timestamp(connector.created_at),
            "lastModifiedBy": "alice@contoso.com",
            "lastModifiedByType": "User",
            "lastModifiedAt": timestamp(connector.created_at),
        },
        "properties": {
            "hierarchyIdentifier": account,
            "environmentData": environment,
            "environmentName": "AWS" if aws else "GCP",
            "offerings": offerings,
        },
    }
