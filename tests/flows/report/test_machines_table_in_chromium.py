"""The machines table of report.html in headless Chromium, at 1,000 and 100,000 machines:
sorted, filtered and searched by its inline script with no network, paged, fast; and with
scripts disabled the static first page still reads.

The warehouse is the hand-made one of conftest plus generated machines `gen-000000`, ...: for
machine i, plan P1 when i % 3 == 0 else P2, billable hours h = i % 745 in a 744-hour October,
billed h x 0.02 (P2) or h x 0.00672 (P1), a 4.00 seat against an MDE part of h x 0.00672
(so per_seat when h x 0.00672 > 4, i.e. h >= 596), a no_mde_sensor finding when i % 10 == 0.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import time
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from flows.report import render_report

_HARNESS = importlib.util.spec_from_file_location(
    "chromium_harness", Path(__file__).with_name("test_report_in_chromium.py")
)
assert _HARNESS is not None and _HARNESS.loader is not None
chromium = importlib.util.module_from_spec(_HARNESS)
_HARNESS.loader.exec_module(chromium)

GENERATED_SQL = """
INSERT INTO licensing_comparison_monthly (month, subscription_id, resource_id, machine_key,
    machine_name, machine_kind, plan, plan_days_p1, plan_days_p2, trial_days, billable_hours,
    hours_in_month, utilization, billed_hours, billed_cost, hourly_cost, mde_component_cost,
    seat_option, seat_cost, per_hour_savings, break_even_utilization, cheaper, currency)
SELECT DATE '2026-10-01', 'sub-' || (i % 7), rid, rid, name, 'vm', plan,
       CASE WHEN plan = 'P1' THEN 31 ELSE 0 END, CASE WHEN plan = 'P2' THEN 31 ELSE 0 END, 0,
       h, 744, h / 744, h, h * rate, h * rate, h * 0.00672, 'mde_for_servers', 4.00,
       4.00 - h * 0.00672, 4.00 / (0.00672 * 744),
       CASE WHEN 4.00 - h * 0.00672 < 0 THEN 'per_seat' ELSE 'per_hour' END, 'USD'
FROM (
    SELECT i, 'gen-' || lpad(CAST(i AS VARCHAR), 6, '0') AS name,
           '/subscriptions/sub-' || (i % 7) || '/resourcegroups/rg/providers/'
               || 'microsoft.compute/virtualmachines/gen-' || lpad(CAST(i AS VARCHAR), 6, '0')
               AS rid,
           CASE WHEN i % 3 = 0 THEN 'P1' ELSE 'P2' END AS plan,
           CASE WHEN i % 3 = 0 THEN 0.00672 ELSE 0.02 END AS rate,
           CAST(i % 745 AS DOUBLE) AS h
    FROM range($machines) AS t(i)
);
INSERT INTO findings
SELECT machine_key, subscription_id, month, 'no_mde_sensor', 'generated', 0.0, 'USD'
FROM licensing_comparison_monthly
WHERE machine_name LIKE 'gen-%' AND CAST(substr(machine_name, 5) AS INTEGER) % 10 = 0;
"""


def generated_report(warehouse: Path, directory: Path, machines: int) -> Path:
    path = directory / "warehouse.duckdb"
    shutil.copy(warehouse, path)
    with duckdb.connect(str(path)) as con:
        for statement in GENERATED_SQL.split(";"):
            if statement.strip():
                con.execute(statement.replace("$machines", str(machines)))
    rendered = render_report(path, chromium_month(), directory / "reports", formats=["html"])
    assert rendered.html is not None
    return rendered.html


def chromium_month() -> date:
    return date(2026, 10, 1)


class Page:
    """One Chromium tab on report.html, scripts on or off."""

    def __init__(self, browser: Any, session: str) -> None:
        self.browser, self.session = browser, session

    def run(self, expression: str) -> Any:
        answer = self.browser.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=self.session,
        )
        if "exceptionDetails" in answer:
            raise AssertionError(answer["exceptionDetails"])
        return answer["result"].get("value")

    def status(self) -> str:
        return self.run("document.getElementById('machines-status').textContent")

    def names(self) -> list[str]:
        return self.run(
            "[...document.querySelectorAll('#machines tbody tr')]"
            ".map(row => row.cells[0].textContent)"
        )

    def choose(self, select: str, value: str) -> None:
        self.run(
            f"(() => {{ const s = document.getElementById('machines-filter-{select}');"
            f" s.value = {json.dumps(value)}; s.dispatchEvent(new Event('change')); }})()"
        )

    def search(self, words: str) -> None:
        self.run(
            "(() => { const s = document.getElementById('machines-search');"
            f" s.value = {json.dumps(words)}; s.dispatchEvent(new Event('input')); }})()"
        )
        self.run("new Promise(done => setTimeout(done, 300))")

    def click(self, selector: str) -> None:
        self.run(f"document.querySelector({json.dumps(selector)}).click()")

    def screenshot(self, path: Path) -> bytes:
        box = self.run(
            "(() => { const r = document.getElementById('machines').getBoundingClientRect();"
            " return [r.x, r.y + window.scrollY, r.width, Math.min(r.height, 1400)]; })()"
        )
        data = base64.b64decode(
            self.browser.call(
                "Page.captureScreenshot",
                {
                    "format": "png",
                    "captureBeyondViewport": True,
                    "clip": {"x": box[0], "y": box[1], "width": box[2], "height": box[3],
                             "scale": 1},
                },
                session=self.session,
            )["data"]
        )  # fmt: skip
        path.write_bytes(data)
        if keep := os.environ.get("MDECOST_KEEP_SCREENSHOTS"):
            Path(keep).mkdir(parents=True, exist_ok=True)
            (Path(keep) / path.name).write_bytes(data)
        return data


def open_page(browser: Any, html: Path, scripts: bool) -> tuple[Page, float]:
    target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
        "sessionId"
    ]
    for domain in ("Runtime", "Network", "Page"):
        browser.call(f"{domain}.enable", session=session)
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": chromium.VIEWPORT_WIDTH, "height": 1000, "deviceScaleFactor": 1,
         "mobile": False},
        session=session,
    )  # fmt: skip
    if not scripts:
        browser.call("Emulation.setScriptExecutionDisabled", {"value": True}, session=session)
    browser.events.clear()
    started = time.perf_counter()
    browser.call("Page.navigate", {"url": html.resolve().as_uri()}, session=session)
    browser.wait_for("Page.loadEventFired", timeout=60)
    return Page(browser, session), time.perf_counter() - started


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = chromium.chromium_binary()
    devtools = chromium.DevTools(binary, tmp_path_factory.mktemp("chromium-table"))
    try:
        yield devtools
    finally:
        devtools.close()


def not_blank(png: bytes) -> bool:
    width, height, bpp, pixels = chromium.decode_png(png)
    return width > 600 and height > 300 and len(set(pixels[:: bpp * 97])) > 5


def test_a_thousand_machines_sort_filter_search_and_page(warehouse, browser, tmp_path):
    html = generated_report(warehouse, tmp_path, 1000)
    page, _ = open_page(browser, html, scripts=True)
    requests = [
        event["params"]["request"]["url"]
        for event in browser.events
        if event.get("method") == "Network.requestWillBeSent"
    ]
    assert requests == [html.resolve().as_uri()]
    # 1,000 generated + the 6 hand-made October machines, 100 a page: 11 pages
    assert page.status() == "Machines 1\u2013100 of 1,006, page 1 of 11"
    # largest billed first: vm-app-01 14.88, then gen-000743 (P2, 743 h x 0.02 = 14.86)
    assert page.names()[:2] == ["vm-app-01", "gen-000743"]
    page.click("#machines-next")
    assert page.status() == "Machines 101\u2013200 of 1,006, page 2 of 11"
    # Plan 1: i % 3 == 0 for i < 1000 is 334 machines, plus arc-onprem-01
    page.choose("plan", "P1")
    assert page.status() == "Machines 1\u2013100 of 335 (of 1,006), page 1 of 4"
    # ... and per seat: h = i >= 596 with i <= 744 and i % 3 == 0: 597, 600, ..., 744 = 50
    page.choose("cheaper", "per_seat")
    assert page.status() == "Machines 1\u201350 of 50 (of 1,006), page 1 of 1"
    page.choose("plan", "")
    # per seat alone: i in 596..744 (149) plus vm-app-01 and scale-1_0 (hourly over 5.00)
    assert page.status() == "Machines 1\u2013100 of 151 (of 1,006), page 1 of 2"
    page.choose("cheaper", "")
    # the finding: i % 10 == 0 (100) plus arc-onprem-01's no_mde_sensor
    page.choose("findings", "no_mde_sensor")
    assert page.status() == "Machines 1\u2013100 of 101 (of 1,006), page 1 of 2"
    page.choose("findings", "")
    page.search("GEN-000042")
    assert page.names() == ["gen-000042"]
    page.search("")
    # by name: ascending on the first click, descending on the second
    page.click('#machines th[data-field="name"] button')
    assert page.names()[:2] == ["arc-onprem-01", "gen-000000"]
    page.click('#machines th[data-field="name"] button')
    assert page.names()[:2] == ["vm-old-03", "vm-nodefender"]
    assert page.run("document.querySelector('.static-note').hidden") is True
    assert not_blank(page.screenshot(tmp_path / "machines-1k.png"))


def test_with_scripts_disabled_the_first_page_still_reads(warehouse, browser, tmp_path):
    html = generated_report(warehouse, tmp_path, 1000)
    page, _ = open_page(browser, html, scripts=False)
    rows = browser.call(
        "Runtime.evaluate",
        {
            "expression": "[document.querySelectorAll('#machines tbody tr').length,"
            " getComputedStyle(document.querySelector('.table-controls')).display,"
            " document.querySelector('.static-note').innerText]",
            "returnByValue": True,
        },
        session=page.session,
    )["result"]["value"]
    assert rows[0] == 100
    assert rows[1] == "none"  # the controls need the script: hidden without it
    assert rows[2].startswith("The 100 machines billed most of 1006;")
    assert page.names()[:2] == ["vm-app-01", "gen-000743"]
    assert not_blank(page.screenshot(tmp_path / "machines-1k-no-script.png"))


def test_a_hundred_thousand_machines_stay_fast(warehouse, browser, tmp_path):
    html = generated_report(warehouse, tmp_path, 100_000)
    assert html.stat().st_size < 25_000_000
    page, loaded = open_page(browser, html, scripts=True)
    assert page.status() == "Machines 1\u2013100 of 100,006, page 1 of 1,001"
    timing = page.run(
        "(() => { const t0 = performance.now();"
        " const s = document.getElementById('machines-filter-plan'); s.value = 'P1';"
        " s.dispatchEvent(new Event('change')); return performance.now() - t0; })()"
    )
    # P1: i % 3 == 0 for i < 100,000 is 33,334, plus arc-onprem-01
    assert page.status() == "Machines 1\u2013100 of 33,335 (of 100,006), page 1 of 334"
    assert timing < 1500, f"filtering 100,000 machines took {timing:.0f} ms"
    assert loaded < 30, f"the page took {loaded:.1f} s to load"
    assert page.run("document.querySelectorAll('#machines tbody tr').length") == 100
    assert not_blank(page.screenshot(tmp_path / "machines-100k.png"))
