"""Cost Management exports, read where Azure writes them: a storage account's container.

An export run (Learn: cost-management-billing/costs/tutorial-improved-exports) writes its data
files and a `manifest.json` into `<directory>/<export name>/<YYYYMMDD-YYYYMMDD>/<run id>/`. The
manifest says which export and run it is (`exportConfig.exportName`, `runInfo.runId`,
`runInfo.submittedTime`), the period (`runInfo.startDate`), the dataset (`exportConfig.type`:
`FocusCost`, `ActualCost`, `AmortizedCost`) and the run's files (`blobs[].blobName`).

Each collect lists the manifests under every `[exports]` source, keeps the newest run of each
export and month (Cost Management overwrites a month with each run: the newest states it), and
imports it unless the lake's record (`state/exports.json`) says that run, with the same blob
ETags, was imported already. A run is downloaded to a scratch folder and imported through the
same validation as `mdecost import-costs` (`flows.exports.import_costs_to_lake`), so a newer run
of a month replaces the older one's partitions; a file refused there is named by its blob.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from azure.storage.blob import ContainerClient

from flows.exports import import_costs_to_lake
from transforms.costs import CostDataError

MANIFEST: Final = "manifest.json"
RECORD: Final = Path("state") / "exports.json"
# `exportConfig.type` -> the cost type of EA / MCA files (FOCUS files state both).
DATASET_COST_TYPES: Final = {"actualcost": "ActualCost", "amortizedcost": "AmortizedCost"}


class ExportRunError(CostDataError):
    """A manifest or a data file of an export run that cannot be read; names the blob."""


@dataclass(frozen=True)
class ExportRun:
    """One run of one export, from its manifest."""

    export: str
    month: str
    run_id: str
    submitted: str
    dataset: str
    blobs: tuple[str, ...]
    etags: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.export}|{self.month}"


def read_manifest(container: ContainerClient, name: str) -> ExportRun:
    origin = f"{container.container_name}/{name}"
    try:
        manifest = json.loads(container.download_blob(name).readall())
        config, run = manifest["exportConfig"], manifest["runInfo"]
        blobs = tuple(str(blob["blobName"]) for blob in manifest["blobs"])
        start = datetime.fromisoformat(str(run["startDate"]).replace("Z", "+00:00"))
        return ExportRun(
            export=str(config["exportName"]),
            month=f"{start:%Y-%m}",
            run_id=str(run["runId"]),
            submitted=str(run.get("submittedTime") or ""),
            dataset=str(config.get("type") or ""),
            blobs=blobs,
            etags=(),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise ExportRunError(
            f"{origin}: not a Cost Management export manifest ({type(error).__name__}: {error})"
        ) from None


def newest_runs(container: ContainerClient, directory: str) -> list[ExportRun]:
    """The newest run of every export and month under `directory`, with its blobs' ETags."""
    prefix = f"{directory}/" if directory else ""
    etags: dict[str, str] = {}
    manifests: list[str] = []
    for blob in container.list_blobs(name_starts_with=prefix):
        etags[blob.name] = str(blob.etag)
        if blob.name.rsplit("/", 1)[-1] == MANIFEST:
            manifests.append(blob.name)
    newest: dict[str, ExportRun] = {}
    for name in sorted(manifests):
        run = read_manifest(container, name)
        folder = name.rsplit("/", 1)[0]
        names = tuple(b if "/" in b else f"{folder}/{b}" for b in run.blobs)
        missing = [b for b in names if b not in etags]
        if missing:
            raise ExportRunError(
                f"{container.container_name}/{name}: the manifest lists {missing[0]}, which is "
                "not in the container (a run still being written?); collect again later"
            )
        run = ExportRun(
            run.export,
            run.month,
            run.run_id,
            run.submitted,
            run.dataset,
            names,
            tuple(etags[b] for b in (name, *names)),
        )
        known = newest.get(run.key)
        if known is None or (run.submitted, run.run_id) > (known.submitted, known.run_id):
            newest[run.key] = run
    return sorted(newest.values(), key=lambda r: (r.export, r.month))


def _record(lake: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((lake / RECORD).read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def _save_record(lake: Path, record: dict[str, Any]) -> None:
    path = lake / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    staging.write_text(json.dumps(record, indent=1, sort_keys=True))
    os.replace(staging, path)


@dataclass
class ExportImport:
    imported: list[str]
    already: list[str]
    rows: int = 0


def import_new_runs(
    container: ContainerClient, source: str, directory: str, lake: Path, log: logging.Logger
) -> ExportImport:
    """Import every export run under `directory` that the lake has not imported yet.

    `source` names the container in the record and in messages (`<account>/<container>`).
    """
    record = _record(lake)
    outcome = ExportImport([], [])
    for run in newest_runs(container, directory):
        key = f"{source}|{run.key}"
        if record.get(key) == {"run_id": run.run_id, "etags": list(run.etags)}:
            outcome.already.append(f"{run.export} {run.month} run {run.run_id}")
            continue
        outcome.rows += _import_run(container, source, run, lake)
        record[key] = {"run_id": run.run_id, "etags": list(run.etags)}
        _save_record(lake, record)
        outcome.imported.append(f"{run.export} {run.month} run {run.run_id}")
        log.info("export %s %s run %s imported from %s", run.export, run.month, run.run_id, source)
    return outcome


def _import_run(container: ContainerClient, source: str, run: ExportRun, lake: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="mdecost-export-") as scratch:
        folder = Path(scratch) / run.run_id
        local: dict[Path, str] = {}
        for name in run.blobs:
            path = folder / name.rsplit("/", 1)[-1]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(container.download_blob(name).readall())
            local[path] = name
        try:
            result = import_costs_to_lake(
                [folder], lake, cost_type=DATASET_COST_TYPES.get(run.dataset.lower())
            )
        except CostDataError as error:
            raise ExportRunError(_blob_names(str(error), local, source)) from None
        return result.rows


def _blob_names(message: str, local: dict[Path, str], source: str) -> str:
    """The message with each scratch path replaced by the blob it was downloaded from."""
    for path, name in local.items():
        message = message.replace(str(path), f"{source}/{name}")
    return message


def describe(outcome: ExportImport) -> Iterable[str]:
    yield from (f"imported {line}" for line in outcome.imported)
    yield from (f"already imported {line}" for line in outcome.already)
