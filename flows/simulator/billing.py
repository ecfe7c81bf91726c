"""The scopes above the estate's subscriptions: its billing account and management groups.

An Enterprise Agreement estate has one billing account (the enrollment) over every
subscription; a Microsoft Customer Agreement estate has a billing account with one billing
profile over them, and its management groups cannot be queried for costs (Learn:
cost-management-billing/costs/understand-work-scopes). Management groups: the tenant root group
holds two groups, `mg-production` (the subscriptions at even positions) and `mg-development`
(the odd ones). Wire shapes follow the Billing (2024-04-01) and Management Groups (2023-04-01)
REST examples: `value` lists of `{id, name, type, properties}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from flows.simulator.model import SubscriptionSpec

Agreement = Literal["EnterpriseAgreement", "MicrosoftCustomerAgreement"]
EA: Agreement = "EnterpriseAgreement"
MCA: Agreement = "MicrosoftCustomerAgreement"
BILLING = "/providers/Microsoft.Billing/billingAccounts"
GROUPS = "/providers/Microsoft.Management/managementGroups"
EA_ENROLLMENT = "8611537"
MCA_ACCOUNT = "5e98e158-d5a3-4f8c-bb1b-4c1a4e1f6a2b:0c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f_2019-05-31"
MCA_PROFILE = "AB12-CD34-EF5-GH6"
CHILD_GROUPS = (("mg-production", "Production"), ("mg-development", "Development"))


@dataclass(frozen=True)
class BillingLayout:
    """The estate's billing account (EA enrollment or MCA account with one billing profile)."""

    agreement: Agreement = EA

    @property
    def account_name(self) -> str:
        if self.agreement == MCA:
            return MCA_ACCOUNT
        return EA_ENROLLMENT

    @property
    def account_id(self) -> str:
        return f"{BILLING}/{self.account_name}"

    @property
    def profile_id(self) -> str | None:
        return (
            f"{self.account_id}/billingProfiles/AB12-CD34-EF5-GH6"
            if self.agreement == MCA
            else None
        )

    @property
    def cost_scopes(self) -> list[str]:
        """The scopes whose query covers every subscription: the EA account, the MCA profile."""
        return [self.profile_id or self.account_id]


def group_of(subscriptions: list[SubscriptionSpec], subscription_id: str) -> str:
    position = [s.subscription_id for s in subscriptions].index(subscription_id)
    return CHILD_GROUPS[position % 2][0]


def subscriptions_under(
    subscriptions: list[SubscriptionSpec], group: str, tenant_id: str
) -> list[SubscriptionSpec]:
    """The subscriptions a management group holds (the root holds them all); KeyError if none."""
    if group.lower() == tenant_id.lower():
        return list(subscriptions)
    names = {name.lower() for name, _ in CHILD_GROUPS}
    if group.lower() not in names:
        raise KeyError(group)
    return [s for s in subscriptions if group_of(subscriptions, s.subscription_id) == group.lower()]


def billing_accounts_json(layout: BillingLayout) -> dict[str, Any]:
    return {
        "value": [
            {
                "id": layout.account_id,
                "name": layout.account_name,
                "type": "Microsoft.Billing/billingAccounts",
                "properties": {
                    "accountStatus": "Active",
                    "accountType": "Enterprise" if layout.agreement == EA else "Business",
                    "agreementType": layout.agreement,
                    "displayName": "Contoso (simulated)",
                },
            }
        ]
    }


def billing_profiles_json(layout: BillingLayout) -> dict[str, Any]:
    if layout.profile_id is None:
        return {"value": []}
    return {
        "value": [
            {
                "id": layout.profile_id,
                "name": layout.profile_id.rsplit("/", 1)[1],
                "type": "Microsoft.Billing/billingAccounts/billingProfiles",
                "properties": {"displayName": "Contoso servers (simulated)", "status": "Active"},
            }
        ]
    }


def management_groups_json(tenant_id: str) -> dict[str, Any]:
    groups = [(tenant_id, "Tenant Root Group"), *CHILD_GROUPS]
    return {
        "value": [
            {
                "id": f"{GROUPS}/{name}",
                "type": "Microsoft.Management/managementGroups",
                "name": name,
                "properties": {"tenantId": tenant_id, "displayName": display},
            }
            for name, display in groups
        ]
    }


def descendants_json(
    subscriptions: list[SubscriptionSpec], group: str, tenant_id: str
) -> dict[str, Any]:
    """`GET .../managementGroups/{group}/descendants`: child groups, then subscriptions."""
    value: list[dict[str, Any]] = []
    if group.lower() == tenant_id.lower():
        value.extend(
            {
                "id": f"{GROUPS}/{name}",
                "type": "Microsoft.Management/managementGroups",
                "name": name,
                "properties": {
                    "displayName": display,
                    "parent": {"id": f"{GROUPS}/{tenant_id}"},
                },
            }
            for name, display in CHILD_GROUPS
        )
    for subscription in subscriptions_under(subscriptions, group, tenant_id):
        parent = group_of(subscriptions, subscription.subscription_id)
        value.append(
            {
                "id": f"/subscriptions/{subscription.subscription_id}",
                "type": "Microsoft.Management/managementGroups/subscriptions",
                "name": subscription.subscription_id,
                "properties": {
                    "displayName": subscription.display_name,
                    "parent": {"id": f"{GROUPS}/{parent}"},
                },
            }
        )
    return {"value": value}
