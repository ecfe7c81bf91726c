"""`mdecost exports create | backfill`: Cost Management exports of a scope into a storage account.

Through the Cost Management client's pipeline (credential, endpoint, CA bundle), the Exports
API (`{scope}/providers/Microsoft.CostManagement/exports/{name}`, api-version 2025-03-01):
- `create`: a daily, month-to-date FOCUS export, CSV, partitioned, each run overwriting the
  month's previous one, into `<container>/<directory>` of the storage account.
- `backfill`: one-time exports, one month at a time (a one-time export spans at most a few
  months and the API throttles its runs; Learn: cost-management-billing/costs/
  tutorial-improved-exports), created then run; each month done is recorded in the lake
  (`state/export_backfill.json`), so a backfill stopped by a failure resumes with the month
  that failed. A throttled run (429) waits for its retry-after, within `[collect]` limits.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from azure.core.rest import HttpRequest, HttpResponse
from azure.mgmt.costmanagement import CostManagementClient

from flows.collect.cost_query import QUERY_API_VERSION
from flows.collect.scopes import Month
from flows.collect.throttling import RetryLimits, ThrottleStats, send_with_retries

RECORD: Final = Path("state") / "export_backfill.json"
FOCUS_DATA_VERSION: Final = "1.0r2"


def export_url(arm_endpoint: str, scope: str, name: str, action: str = "") -> str:
    return (
        f"{arm_endpoint.rstrip('/')}{scope.rstrip('/')}/providers/Microsoft.CostManagement/"
        f"exports/{name}{action}?api-version={QUERY_API_VERSION}"
    )


def export_body(
    storage_account: str,
    container: str,
    directory: str,
    *,
    month: Month | None = None,
    starts: str | None = None,
) -> dict[str, Any]:
    """A FOCUS export into the container: daily month-to-date, or one-time for `month`."""
    definition: dict[str, Any] = {
        "type": "FocusCost",
        "timeframe": "MonthToDate" if month is None else "Custom",
        "dataSet": {"granularity": "Daily", "configuration": {"dataVersion": FOCUS_DATA_VERSION}},
    }
    if month is not None:
        definition["timePeriod"] = {
            "from": month.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "to": (month.end - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    schedule: dict[str, Any] = {"status": "Inactive"}
    if month is None:
        schedule = {
            "status": "Active",
            "recurrence": "Daily",
            "recurrencePeriod": {"from": starts, "to": "2099-12-31T00:00:00Z"},
        }
    return {
        "properties": {
            "schedule": schedule,
            "format": "Csv",
            "deliveryInfo": {
                "destination": {
                    "type": "AzureBlob",
                    "resourceId": storage_account,
                    "container": container,
                    "rootFolderPath": directory,
                }
            },
            "definition": definition,
            "partitionData": True,
            "dataOverwriteBehavior": "OverwritePreviousReport",
            "compressionMode": "None",
        }
    }


def _send(
    client: CostManagementClient,
    method: str,
    url: str,
    body: dict[str, Any] | None,
    *,
    limits: RetryLimits,
    what: str,
    log: logging.Logger | logging.LoggerAdapter,
) -> dict[str, Any]:
    def send() -> HttpResponse:
        request = (
            HttpRequest(method, url, json=body) if body is not None else HttpRequest(method, url)
        )
        return client.send_request(request, retry_total=0)

    def parse(response: HttpResponse) -> dict[str, Any]:
        return dict(response.json()) if response.content else {}

    return send_with_retries(send, parse, limits=limits, stats=ThrottleStats(), what=what, log=log)


def create_daily_export(
    client: CostManagementClient,
    arm_endpoint: str,
    scope: str,
    name: str,
    destination: tuple[str, str, str],
    *,
    starts: str,
    limits: RetryLimits,
    log: logging.Logger | logging.LoggerAdapter,
) -> dict[str, Any]:
    """Create (or update) the daily FOCUS export `name` of `scope`; the API's answer."""
    storage_account, container, directory = destination
    return _send(
        client,
        "PUT",
        export_url(arm_endpoint, scope, name),
        export_body(storage_account, container, directory, starts=starts),
        limits=limits,
        what=f"export {name} of {scope}",
        log=log,
    )


def backfill(
    client: CostManagementClient,
    arm_endpoint: str,
    scope: str,
    name: str,
    destination: tuple[str, str, str],
    months: list[Month],
    lake: Path,
    *,
    limits: RetryLimits,
    log: logging.Logger | logging.LoggerAdapter,
    progress: Callable[[str], None] = lambda line: None,
) -> list[str]:
    """Request a one-time export of each month not yet done; the months requested now.

    Stops at the first month the API refuses (raising its error), after recording the months
    done, so running the same backfill again resumes there.
    """
    storage_account, container, directory = destination
    record_path = lake / RECORD
    try:
        record = json.loads(record_path.read_text())
    except (FileNotFoundError, ValueError):
        record = {}
    key = f"{scope.lower()}|{name}"
    done = set(record.get(key, []))
    requested = []
    for month in months:
        if month.label in done:
            progress(f"{month}: already exported")
            continue
        one_time = f"{name}-{month.year:04d}{month.month:02d}"
        url = export_url(arm_endpoint, scope, one_time)
        body = export_body(storage_account, container, directory, month=month)
        what = f"one-time export {one_time} of {scope}"
        _send(client, "PUT", url, body, limits=limits, what=what, log=log)
        run_url = export_url(arm_endpoint, scope, one_time, "/run")
        _send(client, "POST", run_url, None, limits=limits, what=what, log=log)
        done.add(month.label)
        record[key] = sorted(done)
        record_path.parent.mkdir(parents=True, exist_ok=True)
        staging = record_path.with_name(f".{record_path.name}.{uuid.uuid4().hex}")
        staging.write_text(json.dumps(record, indent=1, sort_keys=True))
        os.replace(staging, record_path)
        requested.append(month.label)
        progress(f"{month}: export run requested ({one_time})")
    return requested
