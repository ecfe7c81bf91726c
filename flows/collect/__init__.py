"""`collect`: Azure -> the Parquet lake, as a Prefect flow (inventory, plans, power events, costs).

This module only wires Prefect tasks to the helpers beside it (like a dlt verified source's
`__init__`): `inventory`, `arc`, `pricings`, `connectors`, `activity_log` and `cost_query`
fetch and shape, the lake
writer (`flows.lake`) replaces partitions atomically, `transforms.costs` turns Query API rows
into the `costs` dataset.

Tasks (one per scope x chunk, never per VM; each talks only through parameters, its return value
and the lake, so any task runner or worker pool can run them):
- `inventory` (scope): VMs, scale-set VMs and Azure Arc machines (on premises, and AWS / GCP
  instances a connector auto-provisions) -> `inventory/snapshot_date=/subscription_id=`.
- `pricings` (scope, after inventory: it needs the machine and scale-set ids) ->
  `pricings/snapshot_date=/...`.
- `connectors` (scope): Defender for Cloud multicloud connectors ->
  `connectors/snapshot_date=/subscription_id=`.
- `power_events` (scope x month): every month from the window's first month to `as_of`'s that
  the Activity Log still holds part of, whole months within the Activity Log retention, merged
  with what the lake already holds outside that span (see `activity_log`; Compute's events and
  Hybrid Compute's, an Arc machine's registration and removal) ->
  `power_events/month=/subscription_id=`.
- `power history` (month, every scope at once; only for months before the Activity Log's
  retention floor, when `[history]` names sources): the Log Analytics workspaces and archive
  storage accounts -> the same `power_events` partitions, `source` saying which (see `history`).
  Before any of them, `history-coverage` asks each source how far back it reaches and the run
  refuses months nothing covers. A month's Activity Log task waits for its history task.
- `costs` (scope x month x cost type): months of `[start, end)` that have begun by `as_of`, each
  replaced whole -> `costs/source=query/month=/subscription_id=/cost_type=`. A month is
  re-collected while `as_of` is less than `[collect] restatement_days` after its end (Cost
  Management restates days after the fact); an older month already in the lake is final and is
  skipped unless `force` is given. A final month not yet in the lake is collected. A scope of
  `[azure] cost_scopes` above subscriptions (billing account, billing profile, management group)
  is asked once per month, grouped by subscription, and writes each subscription's partition.
  Every query waits for room in the tenant's QPU windows first (`qpu`, a ledger beside the lake).
- `subscriptions` (once per tenant, when the run is not limited to `--scope`): names, states,
  tenants and management group paths -> `subscriptions/snapshot_date=/tenant=`.
- `export runs` (each `[[exports.sources]]` entry): the export runs not imported yet, through
  `import-costs`' checks (see `export_storage`) -> `costs/source=export/...`.

With `[[tenants]]`, every task above runs once per tenant with that tenant's credential, scopes
and QPU ledger; a tenant whose sign-in fails is reported and the others are collected.

Cost Management concurrency: the flow itself keeps at most `[collect] cost_query_concurrency`
cost tasks in flight (it submits the next one when one finishes). That needs no Prefect server
object (a global concurrency limit would have to be created on the server first, and the
ephemeral test server starts empty) and holds on any task runner, because the flow is the only
submitter. The QPU ledger paces them to the tenant's quota; a 429 that still comes (another
tool of the tenant, a window the ledger did not know) is handled by `throttling`.

A scope that answers 401/403/404 is reported by name and the other scopes go on; the run ends
by raising `CollectIncomplete` (carrying the summary) so a scheduled run shows as failed, after
everything readable has been written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError, UnfinishedRun
from prefect.futures import PrefectFuture, as_completed
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner

from flows.azure_clients import AzureClients
from flows.collect import (
    activity_log,
    arc,
    archive_storage,
    connectors,
    cost_query,
    export_storage,
    history,
    inventory,
    log_analytics,
    pricings,
    subscriptions,
)
from flows.collect.cost_query import QueryShapeError
from flows.collect.paging import EndlessPaging, follow_pages
from flows.collect.qpu import QpuBudget, ledger_path
from flows.collect.scopes import (
    SCOPE_PREFIX,
    Month,
    enabled_subscription_scopes,
    months_between,
    scope_of,
    subscription_id_of,
    unreadable_reason,
    validated_scopes,
)
from flows.collect.tables import arrow_table
from flows.collect.throttling import RetryLimits, ThrottleStats
from flows.config import Settings, load_settings
from flows.lake import lake_lock, partition_path, write_partition
from transforms.billing import QPU_PER_MONTH_QUERIED, QPU_WINDOWS
from transforms.costs import QUERY_SOURCE, CostDataError, query_result_to_costs, to_costs_table
from transforms.schemas import POWER_EVENTS, PROVENANCE_COLUMNS, SchemaError

__all__ = ["ChunkResult", "CollectIncomplete", "CollectSummary", "collect"]

# Threads for the flow's tasks: enough to overlap ARM round trips of several subscriptions,
# few enough to stay well inside ARM's per-principal read limits.
TASK_WORKERS = 8
# Unexpected failures (network, a service outage outlasting the request-level retries) retry the
# whole chunk; 401/403/404 do not (they are returned as a failure, not raised), nor does an
# answer mdecost cannot read or a listing whose nextLinks make no progress (`UNREADABLE_DATA`):
# asked again, the service says the same thing, and each retry would only add its delay (and,
# for endless paging, another MAX_EMPTY_PAGES_IN_A_ROW requests) to the run.
TASK_RETRIES = 2
TASK_RETRY_DELAYS: list[float] = [10.0, 60.0]
UNREADABLE_DATA = (
    CostDataError,
    QueryShapeError,
    EndlessPaging,
    SchemaError,
    log_analytics.PartialAnswer,
    archive_storage.ArchiveFormatError,
)
# (export_storage.ExportRunError is a CostDataError: an export run is never read twice in vain.)
PRICINGS_WITHOUT_MACHINES = "the inventory could not be read, so machine overrides are unknown"


def _worth_retrying(task: Any, task_run: Any, state: State[Any]) -> bool:
    """Prefect retry condition: retry a failed chunk unless its data was unreadable or the
    service refused the request itself (a 400: asked again, it says the same)."""
    refused = isinstance(state.data, HttpResponseError) and state.data.status_code in (
        400,
        401,
        403,
    )
    return not (isinstance(state.data, UNREADABLE_DATA) or refused)


@dataclass
class ChunkResult:
    """What one task did; `failure` says why a chunk could not be read, `skipped` why it was not
    asked for on purpose."""

    dataset: str
    scope: str
    chunk: str
    rows: int = 0
    pages: int = 0
    throttled: int = 0
    server_errors: int = 0
    waited_seconds: float = 0.0
    # Cost queries: the QPU they cost and the seconds spent pacing to the tenant's quota.
    qpu: float = 0.0
    paced_seconds: float = 0.0
    skipped: str | None = None
    failure: str | None = None
    # Inventory: the ids whose resource-level pricings the pricings task reads (scale sets,
    # then machines).
    pricing_resource_ids: list[str] = field(default_factory=list)

    def line(self) -> str:
        what = f"{self.dataset} {self.scope} {self.chunk}"
        if self.failure:
            return f"{what}: NOT READ - {self.failure}"
        if self.skipped:
            return f"{what}: skipped - {self.skipped}"
        detail = f"{what}: {self.rows} rows"
        if self.pages:
            detail += f", {self.pages} page(s)"
        if self.throttled or self.server_errors:
            detail += (
                f", {self.throttled} throttled and {self.server_errors} server error(s) retried"
                f" after {self.waited_seconds:.1f} s"
            )
        return detail


@dataclass
class CollectSummary:
    """The run's outcome: rows per dataset, throttling met, what could not be read."""

    start: date
    end: date
    as_of: datetime
    scopes: list[str]
    chunks: list[ChunkResult]
    # Which source covered which months of power history (only when [history] was used).
    coverage: list[str] = field(default_factory=list)

    def rows_by_dataset(self) -> dict[str, int]:
        totals = dict.fromkeys(
            ("inventory", "pricings", "connectors", "power_events", "costs", "subscriptions"), 0
        )
        for chunk in self.chunks:
            totals[chunk.dataset] = totals.get(chunk.dataset, 0) + chunk.rows
        return totals

    @property
    def throttled(self) -> int:
        return sum(chunk.throttled for chunk in self.chunks)

    @property
    def waited_seconds(self) -> float:
        return sum(chunk.waited_seconds for chunk in self.chunks)

    @property
    def qpu(self) -> float:
        return sum(chunk.qpu for chunk in self.chunks)

    @property
    def paced_seconds(self) -> float:
        return sum(chunk.paced_seconds for chunk in self.chunks)

    def uncollected_months(self) -> list[ChunkResult]:
        """Cost chunks (scope x month x cost type) that could not be collected."""
        return [chunk for chunk in self.chunks if chunk.failure and chunk.dataset == "costs"]

    @property
    def failures(self) -> list[ChunkResult]:
        return [chunk for chunk in self.chunks if chunk.failure]

    @property
    def skipped_scopes(self) -> list[str]:
        """Scopes of which at least one chunk could not be read."""
        return sorted({chunk.scope for chunk in self.failures})

    def lines(self) -> list[str]:
        rows = ", ".join(f"{name} {count}" for name, count in self.rows_by_dataset().items())
        lines = [
            f"collected [{self.start}, {self.end}) as of {self.as_of:%Y-%m-%dT%H:%M:%SZ} "
            f"for {len(self.scopes)} scope(s): rows {rows}",
            f"cost queries used {self.qpu:g} QPU, waited {self.paced_seconds:.1f} s pacing to "
            f"the tenant's quota; throttled {self.throttled} time(s), waited "
            f"{self.waited_seconds:.1f} s",
            *(f"power history: {line}" for line in self.coverage),
        ]
        skipped = [chunk for chunk in self.chunks if chunk.skipped]
        if skipped:
            lines.append(f"{len(skipped)} chunk(s) skipped on purpose:")
            lines.extend(f"  {chunk.line()}" for chunk in skipped)
        if self.failures:
            lines.append(f"could not read {len(self.skipped_scopes)} scope(s):")
            lines.extend(f"  {chunk.line()}" for chunk in self.failures)
        missing = self.uncollected_months()
        if missing:
            qpu = len(missing) * QPU_PER_MONTH_QUERIED
            lines.append(
                f"{len(missing)} cost month(s) not collected (listed above); running the same "
                f"command again collects them and skips final months already in the lake: about "
                f"{qpu} QPU, {quota_time(qpu)} of the tenant's quota"
            )
        return lines


class CollectIncomplete(RuntimeError):
    """Some scopes or chunks could not be read; everything else was written."""

    def __init__(self, summary: CollectSummary) -> None:
        self.summary = summary
        super().__init__("\n".join(summary.lines()))


def _logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run logger inside a run, else a standard logger (for `task.fn(...)` calls)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("mdecost.collect")


def _utc(instant: datetime | None) -> datetime:
    if instant is None:
        return datetime.now(UTC)
    if instant.tzinfo is None:
        return instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC)


def _read_scope(result: ChunkResult, work: Callable[[ChunkResult], None]) -> ChunkResult:
    """Run `work`; an answer saying the scope cannot be read becomes `result.failure`.

    Either way the chunk's progress line is logged as it finishes.
    """
    try:
        work(result)
    except HttpResponseError as error:
        reason = unreadable_reason(error)
        if reason is None:
            raise
        result.failure = reason
        _logger().warning("%s", result.line())
        return result
    _logger().info("%s", result.line())
    return result


# --- tasks ----------------------------------------------------------------------------------
@task(
    name="discover-scopes",
    retries=TASK_RETRIES,
    retry_delay_seconds=TASK_RETRY_DELAYS,
    retry_condition_fn=_worth_retrying,
    cache_policy=NO_CACHE,
)
def discover_scopes(config_file: Path | None, tenant: str | None = None) -> list[str]:
    """Every enabled subscription the credential (of `tenant`, see `[[tenants]]`) can read."""
    settings = load_settings(config_file).for_tenant(tenant)
    listed = follow_pages(
        AzureClients(settings).subscriptions().subscriptions.list, "subscription discovery"
    )
    return enabled_subscription_scopes(item.as_dict() for item in listed)


@task(
    name="subscriptions",
    retries=TASK_RETRIES,
    retry_delay_seconds=TASK_RETRY_DELAYS,
    retry_condition_fn=_worth_retrying,
    cache_policy=NO_CACHE,
)
def collect_subscriptions(
    config_file: Path | None, as_of: datetime, ingested_at: datetime, tenant: str | None = None
) -> ChunkResult:
    """Snapshot the names, states, tenants and management group paths of every subscription
    the credential reads into `subscriptions` (one partition per tenant and day)."""
    settings = load_settings(config_file).for_tenant(tenant)
    snapshot_date = as_of.date().isoformat()

    def work(result: ChunkResult) -> None:
        clients = AzureClients(settings)
        listed = subscriptions.fetch_subscriptions(clients.subscriptions())
        paths = subscriptions.group_paths(clients.cost(), settings.azure.arm_endpoint)
        table = subscriptions.subscriptions_table(
            listed, paths, snapshot_at=as_of, ingested_at=ingested_at
        )
        write_partition(
            settings.lake.folder,
            "subscriptions",
            {"snapshot_date": snapshot_date, "tenant": tenant or "default"},
            table,
            origin=f"subscriptions at {snapshot_date}",
        )
        result.rows = table.num_rows

    return _read_scope(ChunkResult("subscriptions", "/subscriptions", snapshot_date), work)


@task(
    name="inventory",
    task_run_name="inventory {scope}",
    retries=TASK_RETRIES,
    retry_delay_seconds=TASK_RETRY_DELAYS,
    retry_condition_fn=_worth_retrying,
    cache_policy=NO_CACHE,
)
def collect_inventory(
    config_file: Path | None,
    scope: str,
    as_of: datetime,
    ingested_at: datetime,
    tenant: str | None = None,
) -> ChunkResult:
    """Snapshot the scope's VMs, scale-set VMs and Arc machines at `as_of` into `inventory`."""
    settings = load_settings(config_file).for_tenant(tenant)
    subscription_id = subscription_id_of(scope)
    snapshot_date = as_of.date().isoformat()
    origin = f"inventory of {scope} at {snapshot_date}"

    def work(result: ChunkResult) -> None:
        clients = AzureClients(settings)
        compute = clients.compute(subscription_id)
        fetched = inventory.fetch_inventory(compute, subscription_id, _logger(), origin=origin)
        arc_machines = arc.fetch_arc_machines(
            clients.hybrid(subscription_id), subscription_id, _logger(), origin=origin
        )
        group_tags = inventory.fetch_resource_group_tags(
            clients.resources(subscription_id), origin=origin
        )
        table = inventory.inventory_table(
            [*fetched.records, *arc_machines],
            snapshot_at=as_of,
            ingested_at=ingested_at,
            scope=scope,
            resource_group_tags=group_tags,
            tenant_id=settings.azure.tenant_id,
        )
        write_partition(
            settings.lake.folder,
            "inventory",
            {"snapshot_date": snapshot_date, "subscription_id": subscription_id},
            table,
            origin=origin,
        )
        result.rows = table.num_rows
        # Resource-level Defender settings exist on Arc machines too (see `pricings`).
        result.pricing_resource_ids = [
            *fetched.pricing_resource_ids,
            *(machine["resource_id"] for machine in arc_machines),
        ]

    return _read_scope(ChunkResult("inventory", scope, f"snapshot {snapshot_date}"), work)


@task(
    name="pricings",
    task_run_name="pricings {scope}",
    retries=TASK_RETRIES,
    retry_delay_seconds=TASK_RETRY_DELAYS,
    retry_condition_fn=_worth_retrying,
    cache_policy=NO_CACHE,
)
def collect_pricings(
    config_file: Path | None,
    scope: str,
    as_of: datetime,
    ingested_at: datetime,
    machines: ChunkResult,
    tenant: str | None = None,
) -> ChunkResult:
    """Snapshot the scope's Defender for Servers plan, each scale set's and each machine's into
    `pricings`.

    `machines` is the scope's inventory result: without it the machines' overrides are unknown,
    and a partial snapshot would replace a complete one, so nothing is written.
    """
    settings = load_settings(config_file).for_tenant(tenant)
    subscription_id = subscription_id_of(scope)
    snapshot_date = as_of.date().isoformat()
    result = ChunkResult("pricings", scope, f"snapshot {snapshot_date}")
    if machines.failure:
        result.skipped = PRICINGS_WITHOUT_MACHINES
        _logger().warning("%s", result.line())
        return result

    def work(result: ChunkResult) -> None:
        security = AzureClients(settings).security(subscription_id)
        fetched = pricings.fetch_pricings(
            security, subscription_id, machines.pricing_resource_ids, _logger()
        )
        table = pricings.pricings_table(
            fetched.records, snapshot_at=as_of, ingested_at=ingested_at, scope=scope
        )
        write_partition(
            settings.lake.folder,
            "pricings",
            {"snapshot_date": snapshot_date, "subscription_id": subscription_id},
            table,
            origin=f"pricings of {scope} at {snapshot_date}",
        )
        result.rows = table.num_rows

    return _read_scope(result, work)


@task(
    name="connectors",
    task_run_name="connectors {scope}",
    retries=TASK_RETRIES,
    retry_delay_seconds=TASK_RETRY_DELAYS,
    retry_condition_fn=_worth_retrying,
    cache_policy=NO_CACHE,
)
def collect_connectors(
    config_file: Path | None,
    scope: str,
    as_of: datetime,
    ingested_at: datetime,
    tenant: str | None = None,
) -> ChunkResult:
    """Snapshot the scope's Defender for Cloud multicloud connectors into `connectors`."""
    settings = load_settings(config_file).for_tenant(tenant)
    subscription_id = subscription_id_of(scope)
    snapshot_date = as_of.date().isoformat()
    origin = f"connectors of {scope} at {snapshot_date}"

    def work(result: ChunkResult) -> None:
        security = AzureClients(settings).security(subscription_id)
        records = connectors.fetch_connectors(security, subscription_id, origin=origin)
        table = connectors.connectors_table(
            records, snapshot_at=as_of, ingested_at=ingested_at, scope=scope
        )
        write_partition(
            settings.lake.folder,
            "connectors",
            {"snapshot_date": snapshot_date, "subscription_id": subscription_id},
            table,
            origin=origin,
        )
        result.rows = table.num_rows

    return _read_scope(ChunkResult("connectors", scope, f"snapshot {snapshot_date}"), work)


@task(
    name="power-events",
    task_run_name="power events {scope} {month}",
    retries=TASK_RETRIES,
    retry_delay_seconds=TASK_RETRY_DELAYS,
    retry_condition_fn=_worth_retrying,
    cache_policy=NO_CACHE,
)
def collect_power_events(
    config_file: Path | None,
    scope: str,
    month: str,
    as_of: datetime,
    ingested_at: datetime,
    tenant: str | None = None,
) -> ChunkResult:
    """Re-collect one month of compute power events into `power_events` (see `activity_log`)."""
    settings = load_settings(config_file).for_tenant(tenant)
    subscription_id = subscription_id_of(scope)
    chunk = Month.parse(month)
    since, until = activity_log.collected_span(chunk, as_of)
    partition = {"month": chunk.label, "subscription_id": subscription_id}
    origin = f"power events of {scope} for {chunk}"

    def work(result: ChunkResult) -> None:
        monitor = AzureClients(settings).monitor(subscription_id)
        fresh = activity_log.power_events_frame(
            activity_log.fetch_events(monitor, since, until, origin=origin),
            subscription_id=subscription_id,
            since=since,
            until=until,
        )
        fresh = activity_log.with_provenance(fresh, ingested_at=ingested_at, scope=scope)
        existing_file = partition_path(settings.lake.folder, "power_events", partition)
        existing = pl.read_parquet(existing_file) if existing_file.exists() else fresh.clear()
        table = activity_log.merged_month(existing, fresh, since, until)
        write_partition(
            settings.lake.folder,
            "power_events",
            partition,
            table,
            origin=origin,
        )
        result.rows = fresh.height

    return _read_scope(ChunkResult("power_events", scope, chunk.label), work)


@task(
    name="history-coverage",
    retries=TASK_RETRIES,
    retry_delay_seconds=TASK_RETRY_DELAYS,
    retry_condition_fn=_worth_retrying,
    cache_policy=NO_CACHE,
)
def history_coverage(
    config_file: Path | None,
    scopes: list[str],
    start: date,
    as_of: datetime,
    tenant: str | None = None,
) -> list[history.Coverage]:
    """How far back each `[history]` source reaches (see `history`); a source the credential
    cannot read covers nothing, and says why."""
    settings = load_settings(config_file).for_tenant(tenant)
    clients = AzureClients(settings)
    limits = RetryLimits(settings.collect.max_retries, settings.collect.max_retry_wait_seconds)
    subscription_ids = [subscription_id_of(scope) for scope in scopes]
    coverages = []
    for workspace in settings.history.workspaces:
        name = f"Log Analytics workspace {workspace}"
        try:
            earliest = log_analytics.earliest_record(
                clients.logs(),
                workspace,
                Month.of(start).start,
                as_of,
                limits=limits,
                log=_logger(),
            )
        except HttpResponseError as error:
            reason = unreadable_reason(error)
            if reason is None:
                raise
            coverages.append(history.Coverage(log_analytics.SOURCE, f"{name} ({reason})", None))
            continue
        first = Month(earliest.year, earliest.month) if earliest else None
        coverages.append(history.Coverage(log_analytics.SOURCE, name, first))
    for archive in settings.history.storage:
        name = f"archive {archive.account_url}/{archive.container}"
        try:
            first = archive_storage.earliest_month(clients.archive(archive), subscription_ids)
        except HttpResponseError as error:
            reason = unreadable_reason(error)
            if reason is None:
                raise
            coverages.append(history.Coverage(archive_storage.SOURCE, f"{name} ({reason})", None))
            continue
        coverages.append(history.Coverage(archive_storage.SOURCE, name, first))
    return coverages


@task(
    name="power-history",
    task_run_name="power history {month}",
    retries=TASK_RETRIES,
    retry_delay_seconds=TASK_RETRY_DELAYS,
    retry_condition_fn=_worth_retrying,
    cache_policy=NO_CACHE,
)
def collect_history(
    config_file: Path | None,
    scopes: list[str],
    month: str,
    as_of: datetime,
    ingested_at: datetime,
    tenant: str | None = None,
) -> ChunkResult:
    """Read one month of power events of `scopes` from every `[history]` source and rebuild the
    month's `power_events` partitions with them (see `history`)."""
    settings = load_settings(config_file).for_tenant(tenant)
    chunk = Month.parse(month)
    since, until = history.history_span(chunk, as_of)
    subscription_ids = [subscription_id_of(scope) for scope in scopes]
    origin = f"power history for {chunk}"

    def work(result: ChunkResult) -> None:
        clients = AzureClients(settings)
        fetched: dict[str, dict[str, list[pl.DataFrame]]] = {
            subscription_id: {} for subscription_id in subscription_ids
        }
        if settings.history.workspaces:
            stats = log_analytics.QueryStats()
            logs = clients.logs()
            try:
                for workspace in settings.history.workspaces:
                    rows = log_analytics.fetch_rows(
                        logs,
                        workspace,
                        subscription_ids,
                        since,
                        until,
                        limits=RetryLimits(
                            settings.collect.max_retries, settings.collect.max_retry_wait_seconds
                        ),
                        stats=stats,
                        log=_logger(),
                        origin=origin,
                    )
                    frames = log_analytics.power_events_frames(rows, since=since, until=until)
                    for subscription_id in subscription_ids:
                        fetched[subscription_id].setdefault(log_analytics.SOURCE, []).append(
                            frames.get(subscription_id, _no_events(subscription_id))
                        )
            finally:
                result.pages += stats.queries
                result.throttled += stats.throttled
                result.waited_seconds += stats.waited_seconds
        for archive in settings.history.storage:
            container = clients.archive(archive)
            for subscription_id in subscription_ids:
                records = list(
                    archive_storage.fetch_records(container, subscription_id, since, until)
                )
                fetched[subscription_id].setdefault(archive_storage.SOURCE, []).append(
                    archive_storage.power_events_frame(
                        records, subscription_id=subscription_id, since=since, until=until
                    )
                )
        for subscription_id, by_source in fetched.items():
            scope = scope_of(subscription_id)
            fresh = {
                source: activity_log.with_provenance(
                    pl.concat(frames).unique(subset="event_data_id", keep="first"),
                    ingested_at=ingested_at,
                    scope=scope,
                    source=source,
                )
                for source, frames in by_source.items()
            }
            partition = {"month": chunk.label, "subscription_id": subscription_id}
            existing_file = partition_path(settings.lake.folder, "power_events", partition)
            existing = pl.read_parquet(existing_file) if existing_file.exists() else None
            merged = history.merged_partition(existing, fresh, since=since, until=until)
            if merged is None:
                continue
            table = arrow_table(
                merged.sort("event_at", "resource_id", "event_data_id"), POWER_EVENTS
            )
            write_partition(
                settings.lake.folder,
                "power_events",
                partition,
                table,
                origin=f"{origin} of {scope}",
            )
            result.rows += sum(frame.height for frame in fresh.values())

    return _read_scope(ChunkResult("power_events", "history", chunk.label), work)


def _no_events(subscription_id: str) -> pl.DataFrame:
    """The POWER_EVENTS rows (without provenance) of a subscription a source has none for."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return activity_log.power_events_frame(
        [], subscription_id=subscription_id, since=epoch, until=epoch
    )


def _deterministic_order(table: pa.Table) -> pa.Table:
    """Rows sorted by every column but provenance, so a re-run writes the same rows in the same
    order whatever order the API paged them in."""
    keys = [
        (name, "ascending", "at_start")
        for name in table.column_names
        if name not in PROVENANCE_COLUMNS
    ]
    return table.sort_by(keys)


@task(
    name="export-runs",
    task_run_name="export runs {source}",
    retries=TASK_RETRIES,
    retry_delay_seconds=TASK_RETRY_DELAYS,
    retry_condition_fn=_worth_retrying,
    cache_policy=NO_CACHE,
)
def collect_export_runs(config_file: Path | None, source: str, index: int) -> ChunkResult:
    """Import the export runs of `[exports] sources[index]` the lake has not imported yet."""
    settings = load_settings(config_file)
    where = settings.exports.sources[index]

    def work(result: ChunkResult) -> None:
        outcome = export_storage.import_new_runs(
            AzureClients(settings).archive(where),
            source,
            where.directory,
            settings.lake.folder,
            logging.getLogger("mdecost.collect"),
        )
        result.rows = outcome.rows
        result.pages = len(outcome.imported)
        result.skipped = (
            None if outcome.imported else f"no new run ({len(outcome.already)} already imported)"
        )

    return _read_scope(ChunkResult("costs", source, "export runs"), work)


def _tenant_key(settings: Settings) -> str:
    """Whose QPU windows a run's queries count in: the tenant, else the one of the credential."""
    return settings.azure.tenant_id or "default"


def qpu_budget(settings: Settings) -> QpuBudget:
    """The tenant's QPU ledger beside the lake, shared by every task and run on that lake."""
    return QpuBudget(
        ledger_path(settings.lake.folder, _tenant_key(settings)),
        scale=settings.collect.qpu_window_scale,
    )


def _cost_partition(subscription_id: str, month: Month, cost_type: str) -> dict[str, str]:
    return {
        "source": QUERY_SOURCE,
        "month": month.label,
        "subscription_id": subscription_id,
        "cost_type": cost_type,
    }


@task(
    name="costs",
    task_run_name="costs {scope} {month} {cost_type}",
    retries=TASK_RETRIES,
    retry_delay_seconds=TASK_RETRY_DELAYS,
    retry_condition_fn=_worth_retrying,
    cache_policy=NO_CACHE,
)
def collect_costs(
    config_file: Path | None,
    scope: str,
    month: str,
    cost_type: str,
    as_of: datetime,
    ingested_at: datetime,
    force: bool = False,
    covers: list[str] | None = None,
    tenant: str | None = None,
) -> ChunkResult:
    """Query one month of daily costs of one cost type at `scope` and replace the `costs`
    partition of each subscription it covers.

    `scope` is a subscription, or a scope above several (`[azure] cost_scopes`: billing account,
    billing profile, management group) asked once, grouped by subscription; `covers` are the
    subscription scopes the run expects it to answer for: each gets its partition, empty when
    the month billed it nothing, so a charge restated away does not linger.
    """
    settings = load_settings(config_file).for_tenant(tenant)
    wide = not scope.lower().startswith(SCOPE_PREFIX)
    chunk = Month.parse(month)
    subscription_ids = [subscription_id_of(s) for s in (covers or ([] if wide else [scope]))]
    result = ChunkResult("costs", scope, f"{chunk} {cost_type}")
    final_since = chunk.end + timedelta(days=settings.collect.restatement_days)
    if (
        not force
        and as_of >= final_since
        and subscription_ids
        and all(
            partition_path(
                settings.lake.folder, "costs", _cost_partition(sub, chunk, cost_type)
            ).exists()
            for sub in subscription_ids
        )
    ):
        result.skipped = (
            f"final since {final_since:%Y-%m-%d} ([collect] restatement_days) and already in "
            "the lake; --force re-collects it"
        )
        _logger().info("%s", result.line())
        return result

    def work(result: ChunkResult) -> None:
        stats = ThrottleStats()
        origin = f"cost query {scope} {chunk} {cost_type}"
        try:
            pages = cost_query.fetch_month(
                AzureClients(settings).cost(),
                arm_endpoint=settings.azure.arm_endpoint,
                scope=scope,
                cost_type=cost_type,
                month=chunk,
                client_type=settings.azure.cost_client_type,
                limits=RetryLimits(
                    settings.collect.max_retries, settings.collect.max_retry_wait_seconds
                ),
                stats=stats,
                log=_logger(),
                cost_rows=settings.collect.cost_rows,
                by_subscription=wide,
                budget=qpu_budget(settings),
            )
        finally:
            result.throttled = stats.throttled
            result.server_errors = stats.server_errors
            result.waited_seconds = stats.waited_seconds
            result.qpu = stats.qpu
            result.paced_seconds = stats.paced_seconds
        costs = query_result_to_costs(
            pages.columns,
            pages.rows,
            subscription_id=None if wide else subscription_ids[0],
            cost_type=cost_type,
            scope=scope,
            ingested_at=ingested_at,
            origin=origin,
        )
        table = _deterministic_order(
            to_costs_table(costs, origin, tenant_id=settings.azure.tenant_id)
        )
        by_subscription = {
            str(key[0]): part
            for key, part in pl.from_arrow(table)  # type: ignore[union-attr]
            .partition_by("subscription_id", as_dict=True)
            .items()
        }
        for subscription_id in sorted({*subscription_ids, *by_subscription}):
            part = by_subscription.get(subscription_id)
            rows = (
                table.schema.empty_table() if part is None else part.to_arrow().cast(table.schema)
            )
            write_partition(
                settings.lake.folder,
                "costs",
                _cost_partition(subscription_id, chunk, cost_type),
                rows,
                origin=f"{origin} for /subscriptions/{subscription_id}",
            )
        result.rows = table.num_rows
        result.pages = pages.pages

    return _read_scope(result, work)


def _covered(scope: str, wide: list[str], cost_scopes: list[str], chosen: list[str]) -> list[str]:
    """The subscriptions whose partitions a cost scope's query replaces, rows or none.

    A subscription scope covers itself. The one scope above subscriptions covers every chosen
    subscription not queried on its own. With several such scopes, which one bills a subscription
    is known only from the answers, so each covers just the subscriptions its answer names.
    """
    if scope.lower().startswith(SCOPE_PREFIX):
        return [scope]
    if len(wide) > 1:
        return []
    own = {s.lower() for s in cost_scopes}
    return [s for s in chosen if s.lower() not in own]


def quota_time(qpu: float) -> str:
    """How long `qpu` QPU take at the tenant's hourly quota (the binding window at length)."""
    seconds, limit = QPU_WINDOWS[-1]
    minutes = qpu / limit * seconds / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


# --- the flow -------------------------------------------------------------------------------
def _result(future: PrefectFuture[Any], spec: ChunkResult) -> ChunkResult:
    """A finished task's result; a task that raised (after its retries) becomes a failure."""
    try:
        outcome = future.result(raise_on_failure=False)
    except UnfinishedRun:
        # Prefect never runs a task whose upstream task raised. Only pricings has one: the
        # scope's inventory, whose failure has its own line.
        spec.skipped = PRICINGS_WITHOUT_MACHINES
        return spec
    if isinstance(outcome, ChunkResult):
        return outcome
    # Azure errors span lines (code, message, a body excerpt): the first says what happened.
    first_line = str(outcome).strip().splitlines()[0] if str(outcome).strip() else ""
    spec.failure = f"{type(outcome).__name__}: {first_line}"
    return spec


def _submit_tenant(
    config_file: Path | None,
    tenant: str | None,
    start: date,
    end: date,
    scopes: list[str] | None,
    as_of: datetime,
    ingested_at: datetime,
    force: bool,
    specs: dict[PrefectFuture[Any], ChunkResult],
) -> tuple[list[str], list[str]]:
    """Submit one tenant's tasks (its own credential, scopes and QPU budget) into `specs`;
    the scopes chosen and the power history coverage lines."""
    settings = load_settings(config_file).for_tenant(tenant)
    log = _logger()
    if scopes:
        chosen = validated_scopes(scopes)
    elif settings.azure.scopes:
        chosen = list(settings.azure.scopes)
    else:
        chosen = discover_scopes(config_file, tenant)
        log.info("discovered %d enabled subscription(s)", len(chosen))

    # Months older than the Activity Log's retention come from the [history] sources, once
    # each has said how far back it reaches (see `history`).
    history_tasks: dict[str, PrefectFuture[Any]] = {}
    coverage: list[str] = []
    older = history.history_months(start, as_of)
    if older:
        coverages = history_coverage(config_file, chosen, start, as_of, tenant)
        coverage = [
            *history.coverage_lines(older, coverages),
            f"the Activity Log covers {activity_log.retention_floor(as_of):%Y-%m-%dT%H:%MZ} "
            "onwards",
        ]
        for line in coverage:
            log.info("power history: %s", line)
        history.check_coverage(start, as_of, older, coverages)
        for month in older:
            older_events = collect_history.submit(
                config_file, chosen, month.label, as_of, ingested_at, tenant
            )
            specs[older_events] = ChunkResult("power_events", "history", month.label)
            history_tasks[month.label] = older_events
    if not scopes:
        # Every subscription the credential reads (names, groups); a run limited to `scopes`
        # leaves the snapshot to the runs that see the whole tenant.
        names = collect_subscriptions.submit(config_file, as_of, ingested_at, tenant)
        specs[names] = ChunkResult("subscriptions", "/subscriptions", "snapshot")
    floor = activity_log.retention_floor(as_of)
    for scope in chosen:
        machines = collect_inventory.submit(config_file, scope, as_of, ingested_at, tenant)
        specs[machines] = ChunkResult("inventory", scope, "snapshot")
        # Prefect resolves a future passed as a parameter to its result before the task runs.
        plans = collect_pricings.submit(  # type: ignore[call-overload]
            config_file, scope, as_of, ingested_at, machines, tenant
        )
        specs[plans] = ChunkResult("pricings", scope, "snapshot")
        clouds = collect_connectors.submit(config_file, scope, as_of, ingested_at, tenant)
        specs[clouds] = ChunkResult("connectors", scope, "snapshot")
        for month in activity_log.power_event_months(start, as_of):
            if month.end <= floor:
                continue  # nothing of it is left in the Activity Log
            # Same partitions as the month's history task: written after it.
            earlier = [history_tasks[month.label]] if month.label in history_tasks else []
            events = collect_power_events.submit(  # type: ignore[call-overload]
                config_file, scope, month.label, as_of, ingested_at, tenant, wait_for=earlier
            )
            specs[events] = ChunkResult("power_events", scope, month.label)

    cost_months = [month for month in months_between(start, end) if month.start < as_of]
    cost_scopes = list(settings.azure.cost_scopes) or chosen
    queries = len(cost_scopes) * len(cost_months) * len(settings.collect.cost_types)
    log.info(
        "cost queries%s: %d scope(s) x %d month(s) x %d cost type(s) = %d, about %d QPU "
        "(%s of the tenant's quota)",
        f" of tenant {tenant}" if tenant else "",
        len(cost_scopes),
        len(cost_months),
        len(settings.collect.cost_types),
        queries,
        queries * QPU_PER_MONTH_QUERIED,
        quota_time(queries * QPU_PER_MONTH_QUERIED),
    )
    limit = settings.collect.cost_query_concurrency
    in_flight: list[PrefectFuture[Any]] = []
    wide = [s for s in cost_scopes if not s.lower().startswith(SCOPE_PREFIX)]
    for cost_scope in cost_scopes:
        covers = _covered(cost_scope, wide, cost_scopes, chosen)
        for month in cost_months:
            for cost_type in settings.collect.cost_types:
                if len(in_flight) >= limit:
                    in_flight.remove(next(as_completed(in_flight)))
                costs = collect_costs.submit(
                    config_file,
                    cost_scope,
                    month.label,
                    cost_type,
                    as_of,
                    ingested_at,
                    force,
                    covers,
                    tenant,
                )
                specs[costs] = ChunkResult("costs", cost_scope, f"{month} {cost_type}")
                in_flight.append(costs)
    return chosen, coverage


@flow(
    name="mdecost-collect",
    # Prefect's own annotations reject its thread-pool runner here (TaskRunner is invariant).
    task_runner=ThreadPoolTaskRunner(max_workers=TASK_WORKERS),  # type: ignore[arg-type]
    log_prints=False,
)
def collect(
    start: date,
    end: date,
    scopes: list[str] | None = None,
    as_of: datetime | None = None,
    config_file: Path | None = None,
    force: bool = False,
) -> CollectSummary:
    """Collect `[start, end)` (UTC dates) for `scopes` into the lake, as Azure answers at `as_of`.

    `scopes`: `/subscriptions/{id}`; default `[azure] scopes`, else every enabled subscription
    the credential can read. With `[[tenants]]`, each tenant is collected in turn with its own
    credential, scopes and QPU budget; a tenant whose sign-in fails is one failure line.
    `as_of` (default: now) is the instant the run stands at: power
    events are collected up to it, inventory and plans are snapshotted at it, restatement is
    judged from it (the demo passes the simulator's clock). `force` re-collects cost months
    that are past the restatement window. Raises WindowError before any call when the window
    is empty or older than the Activity Log retention with no `[history]` source, and before
    any data is collected when some older month is covered by none; raises CollectIncomplete
    (with the summary) at the end when some scope or chunk could not be read. One collect at a
    time per lake: a second one waits for the lake lock, then raises LakeBusyError before any
    call.
    """
    as_of = _utc(as_of)
    settings = load_settings(config_file)
    activity_log.check_window(start, end, as_of, history=settings.history.configured)
    log = _logger()
    ingested_at = datetime.now(UTC)
    chosen: list[str] = []
    coverage: list[str] = []
    specs: dict[PrefectFuture[Any], ChunkResult] = {}
    refused: list[ChunkResult] = []
    with lake_lock(settings.lake.folder):
        for tenant in settings.tenant_keys():
            try:
                tenant_scopes, tenant_coverage = _submit_tenant(
                    config_file, tenant, start, end, scopes, as_of, ingested_at, force, specs
                )
            except ClientAuthenticationError as error:
                # One tenant's credential failing is reported; the other tenants go on.
                first = (str(error).strip().splitlines() or [type(error).__name__])[0]
                failed = ChunkResult("subscriptions", f"tenant {tenant}", "sign-in")
                failed.failure = f"{type(error).__name__}: {first}"
                log.warning("%s", failed.line())
                refused.append(failed)
                continue
            chosen.extend(tenant_scopes)
            coverage.extend(tenant_coverage)
        for index, source in enumerate(settings.exports.sources):
            name = f"export {source.account_url}/{source.container}/{source.directory}"
            runs = collect_export_runs.submit(config_file, name, index)
            specs[runs] = ChunkResult("costs", name, "export runs")
        results = [_result(future, spec) for future, spec in specs.items()] + refused
    summary = CollectSummary(start, end, as_of, chosen, results, coverage)
    for line in summary.lines():
        log.info("%s", line)
    create_markdown_artifact(
        key="mdecost-collect",
        description="What the collection read, the QPU it used and the time it waited",
        markdown="\n".join(["# mdecost collect", "", *(f"- {line}" for line in summary.lines())]),
    )
    if summary.failures:
        raise CollectIncomplete(summary)
    return summary
