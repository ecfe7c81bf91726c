"""Cost Management's Exports API, as the simulator serves it: runs written into real storage.

`PUT {scope}/providers/Microsoft.CostManagement/exports/{name}` stores a definition (FOCUS,
CSV); `POST .../{name}/run` writes a run the way Cost Management does, into the container the
definition names, of the storage account the simulator was given (`storage`: a container
client factory; Azurite in tests): `<root>/<name>/<YYYYMMDD-YYYYMMDD>/<run id>/part_0_0001.csv`
and a `manifest.json` naming the export, run, period, dataset and files. The data is the
scope's cost rows of the period (a one-time export's `timePeriod`, else month to date) as of the
simulator's clock, in FOCUS 1.0 columns.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
from azure.storage.blob import ContainerClient

from flows.simulator.queries import BadRequest


def period(definition: dict[str, Any], clock: datetime) -> tuple[date, date]:
    """[first, last] day of the export's data: its custom period, else month to date."""
    if str(definition.get("timeframe", "")).lower() == "custom":
        span = definition.get("timePeriod") or {}
        try:
            first = datetime.fromisoformat(str(span["from"]).replace("Z", "+00:00")).date()
            last = datetime.fromisoformat(str(span["to"]).replace("Z", "+00:00")).date()
        except (KeyError, ValueError):
            raise BadRequest("a Custom export needs timePeriod from and to") from None
        return first, last
    today = clock.date()
    return today.replace(day=1), today - timedelta(days=1)


def focus_csv(rows: pl.DataFrame) -> bytes:
    """Cost rows (the simulator's Query API grain) as a FOCUS 1.0 CSV file."""
    day = pl.col("usage_date").cast(pl.Datetime("us"))
    frame = rows.select(
        pl.col("cost").alias("BilledCost"),
        pl.col("currency").alias("BillingCurrency"),
        pl.lit("Usage").alias("ChargeCategory"),
        pl.col("meter").alias("ChargeDescription"),
        day.dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("ChargePeriodStart"),
        (day + pl.duration(days=1)).dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("ChargePeriodEnd"),
        pl.col("quantity").alias("ConsumedQuantity"),
        pl.col("unit_of_measure").alias("ConsumedUnit"),
        pl.col("cost").alias("EffectiveCost"),
        pl.col("resource_id").alias("ResourceId"),
        pl.col("service_name").alias("ServiceName"),
        pl.col("meter").alias("SkuMeter"),
        pl.concat_str(pl.lit("/subscriptions/"), pl.col("subscription_id")).alias("SubAccountId"),
        pl.col("meter_category").alias("x_SkuMeterCategory"),
        pl.col("meter_subcategory").alias("x_SkuMeterSubcategory"),
        pl.col("resource_type").alias("x_ResourceType"),
        pl.col("unit_of_measure").alias("x_PricingUnitDescription"),
    ).sort("ChargePeriodStart", "ResourceId", "SkuMeter")
    return frame.write_csv().encode()


def write_run(
    container: ContainerClient,
    name: str,
    scope: str,
    definition: dict[str, Any],
    root: str,
    rows: pl.DataFrame,
    first: date,
    last: date,
) -> str:
    """Write one run of export `name` (its data file, then its manifest); the run id."""
    run_id = str(uuid.uuid4())
    folder = f"{root.strip('/')}/{name}/{first:%Y%m%d}-{last:%Y%m%d}/{run_id}".lstrip("/")
    data = focus_csv(rows)
    part = f"{folder}/part_0_0001.csv"
    container.upload_blob(part, data, overwrite=True)
    manifest = {
        "manifestVersion": "2024-04-01",
        "byteCount": len(data),
        "blobCount": 1,
        "dataRowCount": rows.height,
        "exportConfig": {
            "exportName": name,
            "resourceId": f"{scope}/providers/Microsoft.CostManagement/exports/{name}",
            "dataVersion": "1.0r2",
            "apiVersion": "2025-03-01",
            "type": definition.get("type", "FocusCost"),
            "timeFrame": definition.get("timeframe"),
            "granularity": "Daily",
        },
        "deliveryConfig": {"partitionData": True, "fileFormat": "Csv", "compressionMode": "None"},
        "runInfo": {
            "executionType": "OnDemand",
            "submittedTime": f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%fZ}",
            "runId": run_id,
            "startDate": f"{first:%Y-%m-%d}T00:00:00",
            "endDate": f"{last:%Y-%m-%d}T00:00:00",
        },
        "blobs": [{"blobName": part, "byteCount": len(data), "dataRowCount": rows.height}],
    }
    container.upload_blob(f"{folder}/manifest.json", json.dumps(manifest), overwrite=True)
    return run_id


StorageFactory = Callable[[str, str], ContainerClient]
