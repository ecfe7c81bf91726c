"""What the simulated Azure charges and lists: VM sizes, meters and the retail price list.

Defender for Servers figures come from `transforms.billing` (list prices, meter names, unit);
VM and disk prices are plausible pay-as-you-go list prices, only there so cost data has the
non-Defender rows real cost data has.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from transforms.billing import (
    DEFENDER_UNIT,
    LIST_PRICE_USD_PER_HOUR,
    RETAIL_PRODUCT_NAME,
    RETAIL_SERVICE_NAME,
)

_METER_NAMESPACE: Final = uuid.UUID("6f0c3c1e-4f55-4d0b-9e0e-6d6465636f73")


def meter_id(name: str) -> str:
    """A stable meter GUID for a meter name (the same in cost rows and the retail list)."""
    return str(uuid.uuid5(_METER_NAMESPACE, name))


@dataclass(frozen=True)
class VmSize:
    name: str
    series: str  # MeterSubcategory, e.g. "Dsv5 Series" (+ " Windows" for Windows machines)
    meter: str  # Meter, e.g. "D2s v5"
    vcpus: int
    linux_usd_per_hour: float

    def usd_per_hour(self, os_type: str) -> float:
        # Windows adds the licence per vCPU-hour on top of the Linux compute price.
        return self.linux_usd_per_hour + (0.046 * self.vcpus if os_type == "Windows" else 0.0)

    def meter_subcategory(self, os_type: str) -> str:
        return f"{self.series} Windows" if os_type == "Windows" else self.series


VM_SIZES: Final = {
    size.name: size
    for size in (
        VmSize("Standard_D2s_v5", "Dsv5 Series", "D2s v5", 2, 0.096),
        VmSize("Standard_D4s_v5", "Dsv5 Series", "D4s v5", 4, 0.192),
        VmSize("Standard_B2ms", "BS Series", "B2ms", 2, 0.0832),
        VmSize("Standard_E4s_v5", "Esv5 Series", "E4s v5", 4, 0.252),
        VmSize("Standard_F8s_v2", "FSv2 Series", "F8s v2", 8, 0.338),
    )
}
VM_UNIT: Final = "1 Hour"

# Premium SSD P10 OS disk, billed per month, reported per day as a fraction of the month.
OS_DISK_METER: Final = "P10 LRS Disk"
OS_DISK_USD_PER_MONTH: Final = 19.71
# A log storage account per subscription.
BLOB_METER: Final = "Hot LRS Data Stored"
BLOB_USD_PER_GB_MONTH: Final = 0.0184
BLOB_GB: Final = 250.0

# Defender meter subcategories under each MeterCategory name Azure has used.
DEFENDER_METER_SUBCATEGORY: Final = {
    "Microsoft Defender for Cloud": "Microsoft Defender for Servers",
    "Azure Defender": "Standard",
    "Security Center": "Standard",
}
DEFENDER_METER_NAME: Final = {"P1": "Standard P1 Node", "P2": "Standard P2 Node"}
# The "... - MDATP Benefit" meter's rate is not published. Plausible, and mdecost's assumption:
# Plan 2's list price less the Defender for Endpoint part, taken as Plan 1's price (Plan 1 is
# essentially the MDE licence): 0.02 - 0.00672 = 0.01328 USD per server-hour. Plan 1 less its
# MDE part would be about nothing, so only Plan 2 machines are given the benefit.
MDE_BENEFIT_USD_PER_HOUR: Final = {
    "P2": round(LIST_PRICE_USD_PER_HOUR["P2"] - LIST_PRICE_USD_PER_HOUR["P1"], 5)
}

# --- Retail Prices API ----------------------------------------------------------------------
# USD is the price of record; other currencies are converted at a fixed rate, rounded like the
# API's figures.
CURRENCY_RATES: Final = {"USD": 1.0, "EUR": 0.9215, "GBP": 0.7931}
RETAIL_REGIONS: Final = {
    "eastus": "US East",
    "westeurope": "EU West",
    "northeurope": "EU North",
    "uksouth": "UK South",
    "southeastasia": "AP Southeast",
}
_DEFENDER_SERVERS_PRODUCT_ID: Final = "DZH318Z0BQ3T"


@dataclass(frozen=True)
class PriceChange:
    """A list price that changed: the older effective date stays listed beside the new one."""

    region: str
    plan: str
    before_usd: float
    effective_from: datetime
    changed_on: datetime


PRICE_CHANGE: Final = PriceChange(
    region="westeurope",
    plan="P2",
    before_usd=0.0186,
    effective_from=datetime(2024, 1, 1, tzinfo=UTC),
    changed_on=datetime(2025, 4, 1, tzinfo=UTC),
)


@dataclass(frozen=True)
class RetailItem:
    """One Retail Prices API item in USD; `as_json` converts to the requested currency."""

    service_name: str
    service_family: str
    product_name: str
    product_id: str
    sku_name: str
    meter_name: str
    arm_region_name: str
    unit_of_measure: str
    usd_price: float
    effective_start: datetime
    price_type: str = "Consumption"
    arm_sku_name: str = ""
    is_primary_meter_region: bool = True

    def as_json(self, currency: str) -> dict[str, object]:
        price = round(self.usd_price * CURRENCY_RATES[currency], 6)
        return {
            "currencyCode": currency,
            "tierMinimumUnits": 0.0,
            "retailPrice": price,
            "unitPrice": price,
            "armRegionName": self.arm_region_name,
            "location": RETAIL_REGIONS.get(self.arm_region_name, self.arm_region_name),
            "effectiveStartDate": self.effective_start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "meterId": meter_id(f"{self.meter_name}|{self.arm_region_name}|{self.sku_name}"),
            "meterName": self.meter_name,
            "productId": self.product_id,
            "skuId": f"{self.product_id}/{meter_id(self.sku_name)[:4].upper()}",
            "productName": self.product_name,
            "skuName": self.sku_name,
            "serviceName": self.service_name,
            "serviceId": "DZH317F1HKN0",
            "serviceFamily": self.service_family,
            "unitOfMeasure": self.unit_of_measure,
            "type": self.price_type,
            "isPrimaryMeterRegion": self.is_primary_meter_region,
            "armSkuName": self.arm_sku_name,
        }


def retail_items() -> list[RetailItem]:
    """The simulated retail price list: Defender for Servers P1/P2 per region, zero-priced
    trial meters, one historical price, and unrelated items a filter must leave out."""
    since = datetime(2023, 8, 1, tzinfo=UTC)
    items: list[RetailItem] = []
    for region in RETAIL_REGIONS:
        for plan, usd in LIST_PRICE_USD_PER_HOUR.items():
            changed = PRICE_CHANGE.region == region and PRICE_CHANGE.plan == plan
            items.append(
                RetailItem(
                    service_name=RETAIL_SERVICE_NAME,
                    service_family="Security",
                    product_name=RETAIL_PRODUCT_NAME,
                    product_id=_DEFENDER_SERVERS_PRODUCT_ID,
                    sku_name=f"Standard {plan}",
                    meter_name=DEFENDER_METER_NAME[plan],
                    arm_region_name=region,
                    unit_of_measure=DEFENDER_UNIT,
                    usd_price=usd,
                    effective_start=PRICE_CHANGE.changed_on if changed else since,
                )
            )
            if changed:
                items.append(
                    RetailItem(
                        service_name=RETAIL_SERVICE_NAME,
                        service_family="Security",
                        product_name=RETAIL_PRODUCT_NAME,
                        product_id=_DEFENDER_SERVERS_PRODUCT_ID,
                        sku_name=f"Standard {plan}",
                        meter_name=DEFENDER_METER_NAME[plan],
                        arm_region_name=region,
                        unit_of_measure=DEFENDER_UNIT,
                        usd_price=PRICE_CHANGE.before_usd,
                        effective_start=PRICE_CHANGE.effective_from,
                    )
                )
            # The free trial is its own zero-priced SKU and meter of the same product.
            items.append(
                RetailItem(
                    service_name=RETAIL_SERVICE_NAME,
                    service_family="Security",
                    product_name=RETAIL_PRODUCT_NAME,
                    product_id=_DEFENDER_SERVERS_PRODUCT_ID,
                    sku_name=f"Standard {plan} Trial",
                    meter_name=f"Standard {plan} Trial Node",
                    arm_region_name=region,
                    unit_of_measure=DEFENDER_UNIT,
                    usd_price=0.0,
                    effective_start=since,
                )
            )
        items.append(
            RetailItem(
                service_name=RETAIL_SERVICE_NAME,
                service_family="Security",
                product_name="Microsoft Defender for Storage",
                product_id="DZH318Z0BQ3S",
                sku_name="Standard",
                meter_name="Standard Transactions",
                arm_region_name=region,
                unit_of_measure="10K",
                usd_price=0.02,
                effective_start=since,
            )
        )
        for size in VM_SIZES.values():
            items.append(
                RetailItem(
                    service_name="Virtual Machines",
                    service_family="Compute",
                    product_name=f"Virtual Machines {size.series}",
                    product_id="DZH318Z0BQ4V",
                    sku_name=size.meter,
                    meter_name=size.meter,
                    arm_region_name=region,
                    unit_of_measure=VM_UNIT,
                    usd_price=size.linux_usd_per_hour,
                    effective_start=since,
                    arm_sku_name=size.name,
                )
            )
    return items
