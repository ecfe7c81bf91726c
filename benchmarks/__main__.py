"""`python -m benchmarks` (`make bench`): build and collection figures, written to results.md.

Each measured step runs in a child process of its own, so its wall time and peak memory (the
child's maximum resident set, from `os.wait4`) are those of that step alone, as a user running
the command would see them. Sizes come from `BENCH_SIZES` (machines, comma-separated; default
1000,10000,100000), months from `BENCH_MONTHS` (default 12). Generated lakes are kept under
`benchmarks/work/` and reused when their size, months and seed match. `BENCH_COLLECT=0` and
`BENCH_QPU=0` leave out the collection benchmarks (`benchmarks.qpu`: cost collection of a
200-subscription tenant per scope strategy, under the simulator's QPU windows). `BENCH_DASK=0`
leaves out the build on a local Dask cluster of 1 and of 2 workers (`BENCH_DASK_SIZE` machines,
default 10000) and the projection to 1,000,000 machines on 16 workers made from it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from benchmarks import qpu
from benchmarks.refresh import daily_refresh

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "work"
RESULTS = ROOT / "results.md"
# Figures of every size measured so far, so `BENCH_SIZES=100000 make bench` adds to the others.
SAVED = WORK / "measured.json"
# The hand-written reading of the figures (what bounds the build), appended to results.md.
ANALYSIS = ROOT / "analysis.md"
PYTHON = sys.executable
MDECOST = str(Path(PYTHON).with_name("mdecost"))
SEED = 7
# A fixed present, so every run measures the same estate.
NOW = "2026-11-01T00:00:00Z"
# Targets of issue 7, on 2 cores.
TARGETS = {10_000: (60.0, 3.0), 100_000: (600.0, 12.0)}  # machines: (seconds, GB)
SCAN_RATIO_TARGET = 15.0
GROWTH_TARGET = 12.0
# Issue 16: an incremental build after a daily refresh, against a full build of the same lake.
INCREMENTAL_TARGET = 0.20
# The largest estate whose daily refresh is measured (two more builds of it).
INCREMENTAL_MAX_MACHINES = 10_000


# A child whose resident memory passes this is stopped (and reported so) before it can push the
# machine into the kernel's out-of-memory killer, which might pick someone else's process.
MEMORY_LIMIT_GB = float(os.environ.get("BENCH_MEMORY_LIMIT_GB", "16"))


@dataclass
class Measured:
    seconds: float
    peak_gb: float
    output: str
    stopped_over_limit: bool = False
    # The largest sum of the resident memory of every process of the child's session (the child,
    # a Dask scheduler and its workers), sampled every 0.2 s.
    tree_peak_gb: float = 0.0


def _resident_gb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    kilobytes = next((int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS")), 0)
    return kilobytes / 1024 / 1024


def _session_gb(session: int) -> float:
    """Resident memory of every process of `session`, added up."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command (in parentheses, which may hold spaces): state, ppid, pgrp,
        # session.
        if int(stat.rsplit(")", 1)[1].split()[3]) == session:
            total += _resident_gb(int(entry.name))
    return total


def run_child(command: list[str], env: dict[str, str] | None = None) -> Measured:
    """Run `command`; its wall time and its peak RSS (largest of it and its waited children).

    The child runs in a session of its own; if the resident memory of the session (the child
    and every process it started) passes MEMORY_LIMIT_GB the whole session is killed and the
    result says so.
    """
    started = time.perf_counter()
    over_limit = threading.Event()
    tree_peak = [0.0]
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT.parent,
        env=env,
        start_new_session=True,
    ) as child:

        def watch() -> None:
            while child.returncode is None and not over_limit.is_set():
                tree = _session_gb(child.pid)
                tree_peak[0] = max(tree_peak[0], tree)
                if tree > MEMORY_LIMIT_GB:
                    over_limit.set()
                    os.killpg(child.pid, signal.SIGKILL)
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        output = child.stdout.read() if child.stdout else ""
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    peak = usage.ru_maxrss / 1024 / 1024
    if over_limit.is_set():
        return Measured(seconds, peak, output, True, tree_peak[0])
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({child.returncode}):\n{output[-3000:]}")
    return Measured(seconds, peak, output, tree_peak_gb=max(tree_peak[0], peak))


def lake_for(machines: int, months: int) -> tuple[Path, Measured | None]:
    """The generated lake for this size (generated now unless an identical one is kept)."""
    folder = WORK / f"{machines}x{months}"
    marker = folder / "generated.json"
    wanted = {"machines": machines, "months": months, "seed": SEED, "now": NOW}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return folder, None
    subprocess.run(["rm", "-rf", str(folder)], check=True)
    folder.mkdir(parents=True)
    measured = run_child(
        [
            MDECOST, "simulator", "generate",
            "--machines", str(machines), "--months", str(months),
            "--lake", str(folder / "lake"), "--seed", str(SEED), "--now", NOW,
        ]
    )  # fmt: skip
    (folder / "mdecost.toml").write_text(
        '[lake]\npath = "lake"\n[warehouse]\npath = "warehouse.duckdb"\n'
    )
    marker.write_text(json.dumps(wanted))
    return folder, measured


SCAN = """
import sys, duckdb
files = sys.argv[1:]
for dataset in ("inventory", "pricings", "power_events", "costs"):
    chosen = [f for f in files if f"/raw/{dataset}/" in f]
    duckdb.sql("SELECT count(*), sum(hash(COLUMNS(*))) FROM read_parquet($files)",
               params={"files": chosen}).fetchall()
"""


def scan_floor(folder: Path) -> Measured:
    """A plain DuckDB read of every raw file: every column of every row, hashed.

    The fastest of three reads: a floor, not one run's luck (on this shared machine a single
    read of the 10k lake has taken from 0.9 s to 4.4 s).
    """
    files = [str(path) for path in sorted((folder / "lake" / "raw").glob("**/data.parquet"))]
    return min(
        (run_child([PYTHON, "-c", SCAN, *files]) for _ in range(3)),
        key=lambda measured: measured.seconds,
    )


# The build flow's steps called as plain functions (`.fn`): the same work without Prefect.
WITHOUT_PREFECT = """
import sys, time
from pathlib import Path
from flows import warehouse
from flows.build import (
    LakeFiles, judge_estate, lake_fingerprint, plan_build, price_book, stage_chunk, stage_estate
)
from flows.config import load_settings
settings = load_settings(Path(sys.argv[1]))
began = time.perf_counter()
files = LakeFiles.of(settings.lake.location())
book = price_book.fn(settings)
facts = judge_estate.fn(files)
chunks = plan_build.fn(settings, files)
known = frozenset(member for chunk in chunks for member in chunk.subscriptions)
with warehouse.staged(settings.warehouse.path) as new:
    staged = [stage_chunk.fn(settings, book, facts, files, chunk, known, new) for chunk in chunks]
    stage_estate.fn(
        settings, book, facts, files, staged, lake_fingerprint(settings.lake.location()), new
    )
print(f"{time.perf_counter() - began:.1f} s in {len(chunks)} chunk(s)")
"""


class PrefectServer:
    """A Prefect server of the benchmark's own, as a scheduled deployment runs against one
    (`mdecost serve`). Without it each `mdecost build` starts a temporary server first, a fixed
    cost measured separately (`ad hoc` below)."""

    def __enter__(self) -> str:
        self.home = WORK / "prefect-home"
        self.home.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/api"
        self.process = subprocess.Popen(
            [str(Path(PYTHON).with_name("prefect")), "server", "start", "--port", str(port)],
            env={**os.environ, "PREFECT_HOME": str(self.home)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self.url
            except OSError:
                time.sleep(1)
        self.__exit__()
        raise RuntimeError("the benchmark's Prefect server did not start within 120 s")

    def __exit__(self, *exc: object) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=60)


def machine_description() -> list[str]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    memory_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    libraries = ", ".join(
        f"{name} {version(name)}" for name in ("polars", "duckdb", "pyarrow", "numpy", "prefect")
    )
    return [
        f"- CPU: {model}; {len(os.sched_getaffinity(0))} cores usable ({os.cpu_count()} online)",
        f"- Memory: {memory_kb / 1024 / 1024:.1f} GB",
        f"- OS: {platform.platform()}",
        "- Load average when results.md was written (other work shares this machine): "
        + ", ".join(f"{load:.1f}" for load in os.getloadavg()),
        f"- Python {platform.python_version()}; {libraries}",
    ]


COLLECT = """
import json, sys, time
from datetime import UTC, datetime, timedelta
from flows.collect import collect
from flows.simulator.server import simulated_azure
now = datetime(2026, 12, 1, tzinfo=UTC)
start = (now - timedelta(days=89)).date()
began = time.perf_counter()
with simulated_azure(seed=7, machines=1000, months=3, now=now) as sim:
    generated = time.perf_counter()
    sim.faults.cost_429_rate = 0.2
    summary = collect(start=start, end=now.date(), as_of=now, config_file=sim.config_path)
    done = time.perf_counter()
    print("RESULT " + json.dumps({
        "estate_seconds": generated - began,
        "collect_seconds": done - generated,
        "requests": sum(sim.requests.values()),
        "cost_queries": sim.requests["cost_query"],
        "throttled": summary.throttled,
        "waited_seconds": summary.waited_seconds,
        "rows": summary.rows_by_dataset(),
        "window": f"{start} .. {now.date()}",
    }))
"""


def describe(measured: Measured) -> str:
    if measured.stopped_over_limit:
        return (
            f"stopped after {measured.seconds:.1f} s: resident memory passed "
            f"{MEMORY_LIMIT_GB:.0f} GB"
        )
    return f"{measured.seconds:.1f} s, peak {measured.peak_gb:.2f} GB"


def main() -> None:
    chosen = os.environ.get("BENCH_SIZES") or "1000,10000,100000"
    sizes = [int(size) for size in chosen.split(",") if size.strip()]
    months = int(os.environ.get("BENCH_MONTHS", "12"))
    WORK.mkdir(exist_ok=True)
    saved = json.loads(SAVED.read_text()) if SAVED.exists() else {}
    ad_hoc_env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    with PrefectServer() as api_url:
        served = {**ad_hoc_env, "PREFECT_API_URL": api_url}
        for machines in sizes:
            saved[str(machines)] = measure_build(machines, months, served, ad_hoc_env)
            SAVED.write_text(json.dumps(saved, indent=1))
        if os.environ.get("BENCH_DASK", "1") != "0":
            dask_size = int(os.environ.get("BENCH_DASK_SIZE", "10000"))
            saved["dask"] = measure_dask(dask_size, months, served)
            SAVED.write_text(json.dumps(saved, indent=1))
    if os.environ.get("BENCH_COLLECT", "1") != "0":
        measured = run_child([PYTHON, "-c", COLLECT])
        line = next(x for x in measured.output.splitlines() if x.startswith("RESULT "))
        saved["collect"] = {"run": _kept(measured), **json.loads(line.removeprefix("RESULT "))}
        print(f"collect: {saved['collect']}", flush=True)
        SAVED.write_text(json.dumps(saved, indent=1))
    if os.environ.get("BENCH_QPU", "1") != "0":
        measured = run_child([PYTHON, "-m", "benchmarks.qpu"])
        line = next(x for x in measured.output.splitlines() if x.startswith("RESULT "))
        saved["qpu"] = json.loads(line.removeprefix("RESULT "))
        print(f"qpu: {saved['qpu']}", flush=True)
        SAVED.write_text(json.dumps(saved, indent=1))
    # The machine as this run found it: a later re-render of results.md must not restate it.
    saved["run"] = {
        "finished_at": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "machine": machine_description(),
    }
    SAVED.write_text(json.dumps(saved, indent=1))
    RESULTS.write_text(render(saved))
    print(f"wrote {RESULTS}")


def measure_build(
    machines: int, months: int, served: dict[str, str], ad_hoc_env: dict[str, str]
) -> dict:
    """Build the lake of this size: with the Prefect server running, without Prefect, and (at
    1,000 machines) ad hoc, where Prefect starts a temporary server; then the scan floor."""
    folder, generated = lake_for(machines, months)
    config = str(folder / "mdecost.toml")
    raw_bytes = sum(p.stat().st_size for p in (folder / "lake" / "raw").glob("**/*.parquet"))
    print(f"{machines} machines: lake ready ({raw_bytes / 1e6:.0f} MB)", flush=True)
    build = run_child([MDECOST, "build", "--full", "--config", config], env=served)
    print(f"  mdecost build {describe(build)}", flush=True)
    daily = None
    if machines <= INCREMENTAL_MAX_MACHINES and not build.stopped_over_limit:
        daily = measure_daily_refresh(folder, served)
    compute = ad_hoc = None
    if not build.stopped_over_limit:
        compute = run_child([PYTHON, "-c", WITHOUT_PREFECT, config], env=served)
        print(f"  without Prefect: {compute.output.strip().splitlines()[-1]}", flush=True)
    if machines == 1000:
        ad_hoc = run_child([MDECOST, "build", "--config", config], env=ad_hoc_env)
        print(f"  ad hoc (temporary Prefect server): {describe(ad_hoc)}", flush=True)
    scan = scan_floor(folder)
    print(f"  DuckDB scan {scan.seconds:.1f} s", flush=True)
    rows_line = next(
        (line.split("rows: ", 1)[1] for line in build.output.splitlines() if "rows: " in line),
        "",
    )
    return {
        "measured_at": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "months": months,
        "generated": _kept(generated),
        "raw_mb": raw_bytes / 1e6,
        "build": _kept(build),
        "compute": _kept(compute),
        "ad_hoc": _kept(ad_hoc),
        "scan": _kept(scan),
        "rows": rows_line,
        "daily": daily,
    }


def measure_daily_refresh(folder: Path, env: dict[str, str]) -> dict:
    """The night after: the lake one collection later (`benchmarks.refresh`), built
    incrementally from the warehouse just built, then in full; both warehouses compared."""
    refreshed = folder / "refreshed"
    added = daily_refresh(folder / "lake", refreshed / "lake")
    shutil.copyfile(folder / "warehouse.duckdb", refreshed / "warehouse.duckdb")
    config = refreshed / "mdecost.toml"
    config.write_text('[lake]\npath = "lake"\n[warehouse]\npath = "warehouse.duckdb"\n')
    incremental = run_child([MDECOST, "build", "--config", str(config)], env=env)
    print(f"  incremental build, snapshot of {added} added: {describe(incremental)}", flush=True)
    shutil.copyfile(refreshed / "warehouse.duckdb", refreshed / "incremental.duckdb")
    full = run_child([MDECOST, "build", "--full", "--config", str(config)], env=env)
    print(f"  full build of the refreshed lake: {describe(full)}", flush=True)
    # In a child: the comparison takes gigabytes, and a child started after it would inherit
    # this process's resident memory until it execs (its peak read ~9.6 GB at 10k).
    compared = subprocess.run(
        [PYTHON, "-m", "benchmarks.compare", str(refreshed / "warehouse.duckdb"),
         str(refreshed / "incremental.duckdb")],
        capture_output=True, text=True, cwd=ROOT.parent, check=False,
    )  # fmt: skip
    made = next(
        (line for line in incremental.output.splitlines() if "incremental build: chunks" in line),
        "",
    )
    return {
        "day": f"{added}",
        "incremental": _kept(incremental),
        "full": _kept(full),
        "made": made.split("incremental build: chunks ", 1)[-1],
        "identical": compared.returncode == 0 and compared.stdout.strip().endswith("IDENTICAL"),
    }


def render_daily(builds: dict[int, dict]) -> list[str]:
    """The incremental build after a daily refresh, per size measured."""
    measured = {m: b["daily"] for m, b in builds.items() if b.get("daily")}
    if not measured:
        return []
    lines = [
        "",
        "## Incremental build after a daily refresh",
        "",
        "The lake one nightly collection later (`benchmarks/refresh.py`: a snapshot one day",
        "after the latest, one more day of power events and charges, the restatement window's",
        "month rewritten), built by `mdecost build` from the warehouse of the full build above,",
        "then by `mdecost build --full`; the two warehouses compared table by table.",
        "",
        "| machines | day added | incremental | full | incremental / full | chunks | identical |",
        "|---:|---|---:|---:|---:|---|---|",
    ]
    for machines, daily in measured.items():
        incremental, full = Measured(**daily["incremental"]), Measured(**daily["full"])
        lines.append(
            f"| {machines:,} | {daily['day']} | {describe(incremental)} | {describe(full)} "
            f"| {incremental.seconds / full.seconds:.0%} | {daily['made']} "
            f"| {'yes' if daily['identical'] else 'NO'} |"
        )
    if 10_000 in measured:
        daily = measured[10_000]
        ratio = daily["incremental"]["seconds"] / daily["full"]["seconds"]
        met = ratio <= INCREMENTAL_TARGET and daily["identical"]
        lines += [
            "",
            f"- 10,000 incremental / full after a daily refresh: {ratio:.0%} "
            f"(<= {INCREMENTAL_TARGET:.0%}, identical): {'met' if met else 'MISSED'}",
        ]
    return lines


# What `stage_chunks_on_dask` logs of each chunk and of the whole phase (flows/build.py).
DASK_CHUNK = re.compile(
    r"chunk \d+/\d+ \((?:\d+ subscription\(s\), (?P<mb>[\d,.]+) MB raw|rows of no collected "
    r"subscription)\) computed on a Dask worker in (?P<compute>[\d.]+) s, appended in "
    r"(?P<append>[\d.]+) s"
)
DASK_PHASE = re.compile(r"(?P<chunks>\d+) chunks on Dask in (?P<seconds>[\d.]+) s")
DASK_WORKERS = (1, 2)
# The projection: a million machines on a cluster of this many one-core workers.
PROJECTED_MACHINES = 1_000_000
PROJECTED_WORKERS = 16
DEFAULT_CHUNK_MB = 32.0


def measure_dask(machines: int, months: int, served: dict[str, str]) -> dict:
    """Build the lake of this size on a local Dask cluster of 1, then 2 worker processes (one
    thread each); wall time, peak memory of the whole process tree, and each chunk's seconds on
    its worker and appending in the building process, from the build's log."""
    folder, _ = lake_for(machines, months)
    runs = {}
    for workers in DASK_WORKERS:
        config = folder / f"mdecost-dask-{workers}.toml"
        config.write_text(
            '[lake]\npath = "lake"\n[warehouse]\npath = "warehouse-dask.duckdb"\n'
            f'executor = "dask"\ndask_workers = {workers}\n'
        )
        # --full: the second run would otherwise find the first's warehouse and keep it whole.
        measured = run_child([MDECOST, "build", "--full", "--config", str(config)], env=served)
        chunks = [
            {
                "mb": float(match["mb"].replace(",", "")) if match["mb"] else 0.0,
                "compute": float(match["compute"]),
                "append": float(match["append"]),
            }
            for match in DASK_CHUNK.finditer(measured.output)
        ]
        phase = DASK_PHASE.search(measured.output)
        runs[str(workers)] = {
            "run": _kept(measured),
            "chunks": chunks,
            "phase_seconds": float(phase["seconds"]) if phase else None,
        }
        print(f"  dask, {workers} worker(s): {describe(measured)}, tree peak "
              f"{measured.tree_peak_gb:.2f} GB, {len(chunks)} chunks", flush=True)  # fmt: skip
    raw_bytes = sum(p.stat().st_size for p in (folder / "lake" / "raw").glob("**/*.parquet"))
    return {
        "measured_at": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "machines": machines,
        "months": months,
        "raw_mb": raw_bytes / 1e6,
        "load": [round(load, 1) for load in os.getloadavg()],
        "runs": runs,
    }


def render_dask(dask: dict, local: dict | None = None) -> list[str]:
    """The Dask section: 1 against 2 workers (and `local`, the local executor's build of the same
    lake, as `measure_build` saved it), and the projection to a million machines."""
    runs = {int(workers): run for workers, run in dask["runs"].items()}
    lines = [
        f"## Chunks on a local Dask cluster: {dask['machines']:,} machines x "
        f"{dask['months']} months",
        "",
        "`mdecost build` with `executor = \"dask\"` and `dask_workers` = 1, then 2 (worker",
        "processes of one thread each, started by the build), against the benchmark's Prefect",
        "server. Peak = the largest sum of the resident memory of every process of the build",
        "(building process, scheduler, workers), sampled every 0.2 s. Measured "
        f"{dask['measured_at']}, load average before: "
        + ", ".join(f"{load:.1f}" for load in dask["load"])
        + " (2 shared cores).",
        "",
        "| workers | build wall | peak RSS, whole tree | chunks | chunk phase | worker s / chunk "
        "(mean) | append s / chunk (mean) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for workers, run in sorted(runs.items()):
        measured, chunks = Measured(**run["run"]), run["chunks"]
        compute, append = (
            sum(chunk[key] for chunk in chunks) / max(len(chunks), 1)
            for key in ("compute", "append")
        )
        lines.append(
            f"| {workers} | {measured.seconds:.1f} s | {measured.tree_peak_gb:.2f} GB "
            f"| {len(chunks)} | {run['phase_seconds'] or 0:.1f} s "
            f"| {compute:.2f} s | {append:.2f} s |"
        )
    if set(DASK_WORKERS) <= set(runs):
        one, two = (Measured(**runs[w]["run"]) for w in DASK_WORKERS)
        lines += [
            "",
            f"- 1 worker / 2 workers, build wall: {one.seconds / two.seconds:.2f}x; chunk "
            f"phase: {runs[1]['phase_seconds'] / runs[2]['phase_seconds']:.2f}x",
        ]
    if local is not None and 2 in runs:
        two_workers, alone = Measured(**runs[2]["run"]), Measured(**local["build"])
        lines.append(
            f"- the local executor on the same lake, measured {local['measured_at']}: "
            f"{alone.seconds:.1f} s, peak {alone.peak_gb:.2f} GB; local / 2 workers, build "
            f"wall: {alone.seconds / two_workers.seconds:.2f}x"
        )
    lines += ["", *projection(dask, runs.get(1))]
    return lines


def projection(dask: dict, single: dict | None) -> list[str]:
    """1,000,000 machines on 16 one-core workers, from the one-worker run's per-chunk times."""
    if not single or not single["chunks"] or not single["phase_seconds"]:
        return []
    chunks = [c for c in single["chunks"] if c["mb"] > 0]
    measured = Measured(**single["run"])
    scale = PROJECTED_MACHINES / dask["machines"]
    seconds_per_mb = sum(c["compute"] for c in chunks) / sum(c["mb"] for c in chunks)
    append_per_mb = sum(c["append"] for c in single["chunks"]) / sum(c["mb"] for c in chunks)
    serial = measured.seconds - single["phase_seconds"]
    raw_mb = dask["raw_mb"] * scale
    count = math.ceil(raw_mb / DEFAULT_CHUNK_MB)
    chunk_seconds = seconds_per_mb * DEFAULT_CHUNK_MB
    compute = math.ceil(count / PROJECTED_WORKERS) * chunk_seconds
    append = append_per_mb * raw_mb
    total = serial * scale + max(compute, append) + chunk_seconds
    return [
        f"### Projection: {PROJECTED_MACHINES:,} machines on {PROJECTED_WORKERS} workers",
        "",
        f"From the 1-worker run (the worker alone on a core): {seconds_per_mb:.3f} s of worker "
        f"time per MB of raw Parquet, {append_per_mb:.4f} s of appending per MB in the building "
        f"process, and {serial:.1f} s outside the chunks (survey, estate facts, plan, estate "
        "views, raw costs, Prefect and cluster start).",
        "",
        f"- raw lake: {dask['raw_mb']:,.0f} MB x {scale:,.0f} = {raw_mb:,.0f} MB, in "
        f"{count:,} chunks of {DEFAULT_CHUNK_MB:.0f} MB, {chunk_seconds:.1f} s each on a worker",
        f"- chunks: {count:,} / {PROJECTED_WORKERS} workers = "
        f"{math.ceil(count / PROJECTED_WORKERS)} rounds x {chunk_seconds:.1f} s = "
        f"{compute:,.0f} s; the one writer appends {append:,.0f} s meanwhile "
        f"({'the writer' if append > compute else 'the workers'} bound the phase)",
        f"- outside the chunks, scaled with the lake: {serial:.1f} s x {scale:,.0f} = "
        f"{serial * scale:,.0f} s (one process: it does not shrink with workers; fixed costs "
        "such as the cluster's start are scaled too, so this overestimates)",
        f"- **about {total / 60:,.0f} minutes** ({total:,.0f} s), against "
        f"{(measured.seconds * scale) / 3600:,.1f} h on one worker at the same rates",
        "",
        "Assumptions: the lake grows linearly with machines (the 10k and 100k lakes measured "
        "above do); every worker has one core as fast as one of these and reads the lake (an "
        "object store) at the rate it reads local disk here; subscriptions are small against a "
        "chunk; the steps outside the chunks scale linearly with the lake and run in the "
        "building process, so they, and the single writer, bound the speed-up; memory of each "
        "worker follows the chunk size, the building process holds every chunk's estate parts.",
    ]


def _kept(measured: Measured | None) -> dict | None:
    """What results.md needs of a run: its figures and its last output line."""
    if measured is None:
        return None
    last = measured.output.strip().splitlines()[-1:] or [""]
    return {**asdict(measured), "output": last[0]}


def _measured(saved: dict | None) -> Measured | None:
    return None if saved is None else Measured(**saved)


def render(saved: dict) -> str:
    """results.md from every size measured so far (each with when it was measured)."""
    builds = {
        int(key): {
            **value,
            **{
                k: _measured(value.get(k))
                for k in ("generated", "build", "compute", "ad_hoc", "scan")
            },
        }
        for key, value in sorted(saved.items(), key=lambda item: item[0].zfill(12))
        if key.isdigit()
    }
    months = next((b["months"] for b in builds.values()), 12)
    run = saved.get("run") or {
        "finished_at": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "machine": machine_description(),
    }
    collect_result = (
        (Measured(**saved["collect"]["run"]), saved["collect"]) if "collect" in saved else None
    )
    lines = [
        "# Benchmarks",
        "",
        f"Measured {run['finished_at']} by `make bench`.",
        "",
        "## Machine",
        "",
        *run["machine"],
        "",
        f"## Build: `mdecost build`, N machines x {months} months",
        "",
        "Estates from `mdecost simulator generate --seed 7 --now 2026-11-01T00:00:00Z`. Each",
        "step in a child process of its own; peak = the child's maximum resident set. `mdecost",
        "build` runs against a Prefect server started by the benchmark, as a scheduled",
        "deployment does (`mdecost serve`); `without Prefect` calls the flow's task functions",
        "directly. The scan floor is DuckDB reading every raw Parquet file whole",
        "(`count(*), sum(hash(COLUMNS(*)))` per dataset). Default `[warehouse] chunk_megabytes`.",
        "",
        "| machines | raw Parquet | build wall | build peak RSS "
        "| without Prefect | scan floor | build / scan | measured |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]  # fmt: skip
    for machines, b in builds.items():
        if b["compute"] is None:
            lines.append(
                f"| {machines:,} | {b['raw_mb']:.0f} MB | {describe(b['build'])} | - | - "
                f"| {b['scan'].seconds:.1f} s | - | {b['measured_at']} |"
            )
            continue
        lines.append(
            f"| {machines:,} | {b['raw_mb']:.0f} MB | {b['build'].seconds:.1f} s "
            f"| {b['build'].peak_gb:.2f} GB | {b['compute'].seconds:.1f} s "
            f"({b['compute'].output.strip().split(' in ')[-1]}, "
            f"peak {b['compute'].peak_gb:.2f} GB) "
            f"| {b['scan'].seconds:.1f} s "
            f"| {b['build'].seconds / b['scan'].seconds:.1f}x | {b['measured_at']} |"
        )
    lines.append("")
    for machines, b in builds.items():
        if (ad_hoc := b["ad_hoc"]) is not None:
            lines.append(
                f"- {machines:,} ad hoc, no Prefect server running (Prefect starts a temporary "
                f"one): {ad_hoc.seconds:.1f} s, peak {ad_hoc.peak_gb:.2f} GB"
            )
    lines += ["", "Rows per view:", ""]
    lines += [f"- {machines:,}: {b['rows']}" for machines, b in builds.items() if b["rows"]]
    generated = [(m, b["generated"]) for m, b in builds.items() if b["generated"]]
    if generated:
        lines += ["", "Generation (`mdecost simulator generate`), this run:", ""]
        lines += [
            f"- {m:,}: {g.seconds:.1f} s, peak {g.peak_gb:.2f} GB; {g.output.strip()}"
            for m, g in generated
        ]
    lines += ["", "### Against the targets (2 cores)", ""]
    for machines, (seconds, gigabytes) in TARGETS.items():
        if machines in builds:
            b = builds[machines]
            if b["build"].stopped_over_limit:
                lines.append(
                    f"- {machines:,}: MISSED: {describe(b['build'])} "
                    f"(targets < {seconds:.0f} s, < {gigabytes:.0f} GB)"
                )
                continue
            met = b["build"].seconds < seconds and b["build"].peak_gb < gigabytes
            lines.append(
                f"- {machines:,}: {b['build'].seconds:.1f} s (< {seconds:.0f} s), "
                f"{b['build'].peak_gb:.2f} GB (< {gigabytes:.0f} GB): {'met' if met else 'MISSED'}"
            )
    if 10_000 in builds:
        ratio = builds[10_000]["build"].seconds / builds[10_000]["scan"].seconds
        lines.append(
            f"- 10,000 build / scan floor: {ratio:.1f}x (<= {SCAN_RATIO_TARGET:.0f}x): "
            f"{'met' if ratio <= SCAN_RATIO_TARGET else 'MISSED'}"
        )
    finished = {m for m, b in builds.items() if not b["build"].stopped_over_limit}
    if {10_000, 100_000} <= finished:
        growth = builds[100_000]["build"].seconds / builds[10_000]["build"].seconds
        lines.append(
            f"- 100,000 / 10,000 build time: {growth:.1f} (<= {GROWTH_TARGET:.0f}): "
            f"{'met' if growth <= GROWTH_TARGET else 'MISSED'}"
        )
    lines += render_daily(builds)
    if "dask" in saved:
        local = saved.get(str(saved["dask"]["machines"]))
        lines += ["", *render_dask(saved["dask"], local)]
    if collect_result:
        measured, figures = collect_result
        lines += [
            "",
            "## Collection through the simulator: 1,000 machines, 20% of cost queries throttled",
            "",
            f"`collect` of {figures['window']} (90 days, 4 calendar months of costs) against",
            "`simulated_azure(machines=1000, months=3)` over HTTPS on loopback with",
            "`faults.cost_429_rate = 0.2`.",
            "",
            f"- collect wall time: {figures['collect_seconds']:.1f} s (estate generation "
            f"before it: {figures['estate_seconds']:.1f} s; child peak RSS "
            f"{measured.peak_gb:.2f} GB)",
            f"- requests served: {figures['requests']:,} "
            f"({figures['cost_queries']:,} cost queries)",
            f"- throttled (429): {figures['throttled']}, waited {figures['waited_seconds']:.1f} s",
            f"- rows: {figures['rows']}",
        ]
    if "qpu" in saved:
        lines += ["", *qpu.render(saved["qpu"])]
    if ANALYSIS.exists():
        lines += ["", ANALYSIS.read_text().strip()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
