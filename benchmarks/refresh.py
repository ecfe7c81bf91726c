"""A daily refresh of a generated lake, for the incremental build's benchmark.

`daily_refresh(before, after)` makes `after` the lake a nightly collection would leave one day
after `before` was collected: every partition of `before` as it was (hard links: same files,
same modification times), plus
- an inventory and a pricings snapshot one day after the latest (the latest's rows, one day
  later: the estate as it stood, a trial one day nearer its end);
- one more day of power events and of Defender charges (the last day's rows, one day later,
  each event under a correlation id of its own), in the partitions of their month;
- the month of the last day's charges written again (the restatement window re-collected:
  the same rows, a new file).
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from flows.lake import PARTITION_FILE, dataset_files, partition_value, scan_files
from transforms.schemas import DATASETS

ONE_DAY = timedelta(days=1)


def daily_refresh(before: Path, after: Path) -> date:
    """Write `after` (see the module's docstring); the day of its new snapshot."""
    shutil.rmtree(after, ignore_errors=True)
    after.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(before), str(after)], check=True)
    latest = max(
        date.fromisoformat(value)
        for path in dataset_files(after, "inventory")
        if (value := partition_value(path, "snapshot_date")) is not None
    )
    for dataset in ("inventory", "pricings"):
        for path in dataset_files(after, dataset):
            if partition_value(path, "snapshot_date") == latest.isoformat():
                rows = (
                    scan_files(dataset, [path])
                    .collect()
                    .with_columns(pl.col("snapshot_at") + ONE_DAY)
                )
                if dataset == "pricings":  # a trial's remaining time, one day less
                    remaining = pl.col("free_trial_remaining")
                    rows = rows.with_columns(
                        free_trial_remaining=pl.when(remaining.is_not_null()).then(
                            pl.max_horizontal(remaining - ONE_DAY, pl.lit(timedelta(0)))
                        )
                    )
                target = Path(
                    str(path).replace(
                        f"snapshot_date={latest}", f"snapshot_date={latest + ONE_DAY}"
                    )
                )
                _write(rows, target, dataset)
    last_day = latest - ONE_DAY
    _repeat_last_day(after, "power_events", "event_at", last_day)
    _repeat_last_day(after, "costs", "charge_period_start", last_day)
    return latest + ONE_DAY


def _repeat_last_day(lake: Path, dataset: str, column: str, last_day: date) -> None:
    month = f"month={last_day:%Y-%m}"
    next_month = f"month={last_day + ONE_DAY:%Y-%m}"
    for path in dataset_files(lake, dataset):
        if month not in path.parts:
            continue
        rows = scan_files(dataset, [path]).collect()
        day = rows.filter(pl.col(column).dt.date() == last_day)
        shifted = day.with_columns(pl.col(column) + ONE_DAY)
        if dataset == "power_events":
            shifted = shifted.with_columns(pl.col("correlation_id") + "-next-day")
        else:
            shifted = shifted.with_columns(pl.col("charge_period_end") + ONE_DAY)
            _write(rows, path, dataset)  # the restatement window, collected again
        target = Path(str(path).replace(month, next_month))
        if target != path and target.exists():
            shifted = pl.concat([scan_files(dataset, [target]).collect(), shifted])
        elif target == path:
            shifted = pl.concat([rows, shifted])
        _write(shifted, target, dataset)


def _write(rows: pl.DataFrame, target: Path, dataset: str) -> None:
    """A partition file replaced by a new one (never written through a hard link)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{PARTITION_FILE}.refresh")
    pq.write_table(rows.to_arrow().cast(DATASETS[dataset]), staging)
    staging.replace(target)
