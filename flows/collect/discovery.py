"""`mdecost scopes`: which cost scopes the credential can read, and which one to query.

A Cost Management query costs about one QPU per month whatever its scope, so the widest scope
that covers the subscriptions is the cheapest: an EA billing account (enrollment), else an MCA
billing profile, else a management group (EA and pay-as-you-go only, at most 3,000 subscriptions;
`transforms.billing`), else each subscription. This module lists what the credential sees
through the Billing and Management Groups APIs (GETs through the Cost Management client's
pipeline: same credential, endpoint and CA bundle) and says what each choice would cost.
A listing the credential may not read (401/403/404) is reported as such, never fatal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.mgmt.costmanagement import CostManagementClient

from flows.collect.paging import NextLinks
from flows.collect.scopes import unreadable_reason
from transforms.billing import (
    MANAGEMENT_GROUP_MAX_SUBSCRIPTIONS,
    QPU_PER_MONTH_QUERIED,
    QPU_WINDOWS,
)

BILLING_API_VERSION = "2024-04-01"
MANAGEMENT_GROUPS_API_VERSION = "2023-04-01"
EA = "EnterpriseAgreement"
MCA = "MicrosoftCustomerAgreement"


@dataclass(frozen=True)
class CostScope:
    """A scope a query could be asked at; `subscriptions` it covers when known (None: unknown)."""

    scope: str
    kind: str
    name: str
    subscriptions: int | None = None
    usable: bool = True
    note: str = ""


@dataclass
class ScopeReport:
    scopes: list[CostScope] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    subscriptions: int = 0

    def recommended(self) -> CostScope | None:
        """The widest scope a query may be asked at (the list is sorted widest first)."""
        return next((s for s in self.scopes if s.usable), None)

    def lines(self, configured: list[str], months: int, cost_types: int) -> list[str]:
        per_subscription = self.subscriptions * cost_types * QPU_PER_MONTH_QUERIED
        lines = [f"subscriptions the credential reads: {self.subscriptions}"]
        for scope in self.scopes:
            covered = "?" if scope.subscriptions is None else str(scope.subscriptions)
            state = "" if scope.usable else f" - not usable: {scope.note}"
            lines.append(
                f"  {scope.kind:<18} {scope.scope} ({scope.name}; subscriptions {covered}){state}"
            )
        lines.extend(f"  not readable: {line}" for line in self.unreadable)
        widest = self.recommended()
        if configured:
            used, per_month = ", ".join(configured), len(configured) * cost_types
        else:
            used, per_month = "each subscription ([azure] cost_scopes is empty)", per_subscription
        lines.append(f"collection queries: {used}")
        lines.append(
            f"  QPU per month of data: {per_month}; {months} month(s): {per_month * months} QPU, "
            f"{quota_minutes(per_month * months):.0f} min of the tenant's quota"
        )
        if widest is not None and widest.scope not in configured:
            best = cost_types * QPU_PER_MONTH_QUERIED
            lines.append(
                f"widest readable scope: {widest.scope} ({widest.kind}): {best} QPU per month, "
                f"{months} month(s) {best * months} QPU, {quota_minutes(best * months):.0f} min; "
                f'set [azure] cost_scopes = ["{widest.scope}"] to use it'
            )
        return lines


def quota_minutes(qpu: float) -> float:
    seconds, limit = QPU_WINDOWS[-1]
    return qpu / limit * seconds / 60


def listing(client: CostManagementClient, url: str, what: str) -> Iterator[dict[str, Any]]:
    links = NextLinks(what)
    next_url: str | None = url
    while next_url:
        links.requested(next_url)
        response = client.send_request(HttpRequest("GET", next_url))
        if response.status_code >= 400:
            raise HttpResponseError(response=response)
        page = response.json()
        items = page.get("value") or []
        yield from items
        next_url = page.get("nextLink") or None
        links.check(len(items), next_url)


def discover(client: CostManagementClient, arm_endpoint: str, subscriptions: int) -> ScopeReport:
    """Every billing account, MCA billing profile and management group the credential reads."""
    base = arm_endpoint.rstrip("/")
    report = ScopeReport(subscriptions=subscriptions)
    agreements: set[str] = set()
    try:
        for account in listing(
            client,
            f"{base}/providers/Microsoft.Billing/billingAccounts?api-version={BILLING_API_VERSION}",
            "billing accounts",
        ):
            properties = account.get("properties") or {}
            agreement = properties.get("agreementType") or ""
            agreements.add(agreement)
            name = properties.get("displayName") or account.get("name", "")
            if agreement == MCA:
                for profile in listing(
                    client,
                    f"{base}{account['id']}/billingProfiles?api-version={BILLING_API_VERSION}",
                    "billing profiles",
                ):
                    report.scopes.append(
                        CostScope(
                            profile["id"],
                            "billing profile",
                            (profile.get("properties") or {}).get("displayName", ""),
                        )
                    )
            else:
                usable = agreement == EA
                report.scopes.append(
                    CostScope(
                        account["id"],
                        "billing account",
                        name,
                        usable=usable,
                        note="" if usable else f"agreement {agreement or 'unknown'}",
                    )
                )
    except HttpResponseError as error:
        report.unreadable.append(f"billing accounts ({unreadable_reason(error) or error.reason})")
    try:
        for group in listing(
            client,
            f"{base}/providers/Microsoft.Management/managementGroups"
            f"?api-version={MANAGEMENT_GROUPS_API_VERSION}",
            "management groups",
        ):
            descendants = listing(
                client,
                f"{base}{group['id']}/descendants?api-version={MANAGEMENT_GROUPS_API_VERSION}",
                f"descendants of {group['id']}",
            )
            count = sum(1 for item in descendants if item.get("type", "").endswith("subscriptions"))
            note = ""
            if MCA in agreements:
                note = "cost queries at management groups are not offered for MCA"
            elif count > MANAGEMENT_GROUP_MAX_SUBSCRIPTIONS:
                note = f"over {MANAGEMENT_GROUP_MAX_SUBSCRIPTIONS} subscriptions"
            report.scopes.append(
                CostScope(
                    group["id"],
                    "management group",
                    (group.get("properties") or {}).get("displayName", ""),
                    count,
                    usable=not note,
                    note=note,
                )
            )
    except HttpResponseError as error:
        report.unreadable.append(f"management groups ({unreadable_reason(error) or error.reason})")
    # Widest first: billing scopes, then groups by the subscriptions they hold.
    order = {"billing account": 0, "billing profile": 1, "management group": 2}
    report.scopes.sort(key=lambda s: (order[s.kind], -(s.subscriptions or 0), s.scope))
    return report
