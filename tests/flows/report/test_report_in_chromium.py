"""report.html opened in headless Chromium (Debian's `chromium`, installed by `make browser`):
no console error, no network request, every chart drawn with its data, a screenshot that is
not blank.

Chromium is driven over the DevTools protocol on `--remote-debugging-pipe` (file descriptors 3
and 4, messages separated by NUL bytes): no port, no extra package, one browser for all checks.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "/usr/bin/chromium")
VIEWPORT_WIDTH = 1280
CHARTS = (
    "cost-by-subscription",
    "utilization-histogram",
    "machine-savings",
    "findings-by-kind",
    "trend",
    "trend-machines",
)


def chromium_binary() -> str:
    for candidate in (os.environ.get("MDECOST_CHROMIUM"), *CHROMIUM_CANDIDATES):
        if candidate and (found := shutil.which(candidate)):
            return found
    pytest.skip(
        "Chromium is not installed, so report.html cannot be checked in a browser: run "
        "`make browser` (as root: apt-get install chromium) or set MDECOST_CHROMIUM"
    )


class DevTools:
    """A minimal DevTools protocol client over Chromium's debugging pipe."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_browser_read, to_browser_write = os.pipe()
        from_browser_read, from_browser_write = os.pipe()
        # Park the child's ends above 3 and 4 so moving them into place cannot clobber either.
        child_read = _dup_high(to_browser_read)
        child_write = _dup_high(from_browser_write)
        for fd in (to_browser_read, from_browser_write):
            os.close(fd)

        def pipe_to_fds_3_and_4() -> None:
            os.dup2(child_read, 3)
            os.dup2(child_write, 4)

        self.process = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=pipe_to_fds_3_and_4,
        )
        os.close(child_read)
        os.close(child_write)
        self._send_fd = to_browser_write
        self._receive_fd = from_browser_read
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        with contextlib.suppress(OSError, TimeoutError):
            self.call("Browser.close", timeout=5)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._send_fd)
        os.close(self._receive_fd)

    def call(
        self, method: str, params: dict | None = None, session: str | None = None, timeout=20.0
    ) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._send_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method} failed: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._receive(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._receive_fd], [], [], max(remaining, 0))
            if not ready:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._receive_fd, 1 << 20)
            if not chunk:
                raise OSError("Chromium closed the debugging pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)


def _dup_high(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_DUPFD, 10)


def decode_png(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, bytes per pixel, raw pixels) of an 8-bit RGB or RGBA PNG, stdlib only."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, idat, header = 8, b"", None
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    assert header is not None
    width, height, depth, colour_type = header[:4]
    assert depth == 8 and colour_type in (2, 6), f"unexpected PNG format {header}"
    bpp = 3 if colour_type == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(idat)
    pixels = bytearray(height * stride)
    previous = bytearray(stride)
    for row in range(height):
        filter_type = raw[row * (stride + 1)]
        line = bytearray(raw[row * (stride + 1) + 1 : (row + 1) * (stride + 1)])
        if filter_type == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif filter_type == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        elif filter_type == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif filter_type == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = previous[i]
                c = previous[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                predictor = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + predictor) & 0xFF
        pixels[row * stride : (row + 1) * stride] = line
        previous = line
    return width, height, bpp, bytes(pixels)


@pytest.fixture(scope="module")
def browser_view(rendered, tmp_path_factory) -> dict[str, Any]:
    """Open report.html once; gather console errors, requests, chart data and screenshots."""
    binary = chromium_binary()
    profile = tmp_path_factory.mktemp("chromium-profile")
    browser = DevTools(binary, profile)
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Runtime", "Log", "Network", "Page"):
            browser.call(f"{domain}.enable", session=session)
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": VIEWPORT_WIDTH, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        url = rendered.html.resolve().as_uri()
        browser.call("Page.navigate", {"url": url}, session=session)
        browser.wait_for("Page.loadEventFired")
        charts = browser.call(
            "Runtime.evaluate",
            {
                "expression": """JSON.stringify(Object.fromEntries(
                    [...document.querySelectorAll('svg[data-chart]')].map(svg => [
                      svg.dataset.chart,
                      {height: svg.getBoundingClientRect().height,
                       data: [...svg.querySelectorAll('[data-value]')].map(el => {
                         const box = el.getBoundingClientRect();
                         return {value: Number(el.dataset.value), label: el.dataset.label,
                                 series: el.dataset.series || null,
                                 drawn: box.width > 0 && box.height > 0};
                       })}])))""",
                "returnByValue": True,
            },
            session=session,
        )["result"]["value"]
        text = browser.call(
            "Runtime.evaluate",
            {"expression": "document.body.innerText", "returnByValue": True},
            session=session,
        )["result"]["value"]
        page_height = browser.call("Page.getLayoutMetrics", session=session)["cssContentSize"][
            "height"
        ]
        screenshot = browser.call(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": VIEWPORT_WIDTH, "height": page_height,
                         "scale": 1},
            },
            session=session,
        )["data"]  # fmt: skip
        thumbnail = browser.call(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": VIEWPORT_WIDTH, "height": page_height,
                         "scale": 0.25},
            },
            session=session,
        )["data"]  # fmt: skip
    finally:
        browser.close()
    shot_path = rendered.directory.parent / "report-screenshot.png"
    shot_path.write_bytes(base64.b64decode(screenshot))
    return {
        "url": url,
        "events": browser.events,
        "charts": json.loads(charts),
        "text": text,
        "screenshot": shot_path,
        "thumbnail": base64.b64decode(thumbnail),
        "page_height": page_height,
    }


def test_no_console_error_and_no_exception(browser_view):
    problems = [
        event["params"]
        for event in browser_view["events"]
        if event.get("method") == "Runtime.exceptionThrown"
        or (
            event.get("method") == "Runtime.consoleAPICalled"
            and event["params"]["type"] in ("error", "assert", "warning")
        )
        or (
            event.get("method") == "Log.entryAdded"
            and event["params"]["entry"]["level"] in ("error", "warning")
        )
    ]
    assert problems == []


def test_the_page_asks_the_network_for_nothing(browser_view):
    requested = [
        event["params"]["request"]["url"]
        for event in browser_view["events"]
        if event.get("method") == "Network.requestWillBeSent"
    ]
    assert requested == [browser_view["url"]]


def test_every_chart_is_drawn_with_its_data(browser_view):
    charts = browser_view["charts"]
    assert sorted(charts) == sorted(CHARTS)
    for name, chart in charts.items():
        assert chart["height"] > 60, name  # a one-month trend is one bar high
        assert any(datum["drawn"] for datum in chart["data"]), name


def test_chart_values_are_the_warehouse_figures(browser_view):
    charts = browser_view["charts"]
    by_subscription = {
        (datum["label"][:8], datum["label"][-2:], datum["series"]): datum["value"]
        for datum in charts["cost-by-subscription"]["data"]
    }
    # The conftest's PLAN_SCOPES, per subscription and plan: SUB_B's P2 (scale-1_0) billed 5.00
    # and P1 (the Arc machine) 2.49984; SUB_A's P2 hourly at list 16.94, and kept with 3 MDE
    # seats for its MDE part 26.24816; SUB_B's P2 with one seat: 8.32664.
    assert by_subscription[("bbbbbbbb", "P2", "Billed (Cost Management)")] == pytest.approx(5.0)
    assert by_subscription[("bbbbbbbb", "P1", "Billed (Cost Management)")] == pytest.approx(2.49984)
    assert by_subscription[("aaaaaaaa", "P2", "Hourly at list rates")] == pytest.approx(16.94)
    keep_quarter = "Keep the plan, MDE seats per quarter"
    assert by_subscription[("aaaaaaaa", "P2", keep_quarter)] == pytest.approx(26.24816)
    keep_machine = "Keep the plan, an MDE seat per machine"
    assert by_subscription[("bbbbbbbb", "P2", keep_machine)] == pytest.approx(8.32664)
    assert len(by_subscription) == 12
    # Utilization: 3/744 -> 0-10%, 100/744 -> 10-20%, 250.5/744 -> 30-40%, 372/744 -> 50-60%,
    # two machines at 744/744 -> 90-100%.
    assert [d["value"] for d in charts["utilization-histogram"]["data"]] == [
        1, 1, 0, 1, 0, 1, 0, 0, 0, 2,
    ]  # fmt: skip
    savings = {d["label"]: d["value"] for d in charts["machine-savings"]["data"]}
    assert savings == pytest.approx(
        {"vm-old-03": 4.94, "vm-batch-02": 3.0, "arc-onprem-01": 2.50016,
         "vm-app-01": -9.88, "scale-1_0": -0.01}
    )  # fmt: skip
    kinds = {d["label"]: d["value"] for d in charts["findings-by-kind"]["data"]}
    assert kinds == pytest.approx(
        {"mde_benefit_unclaimed": 5.0, "no_mde_sensor": 2.49984, "billed_while_not_billable": 0.04,
         "billable_not_billed": 0.01, "defender_off": 0.0}
    )  # fmt: skip


def test_headline_and_escaped_text_read_as_written(browser_view):
    text = browser_view["text"]
    assert "$25.98" in text  # billed, all charges: 25.97984
    # Per plan, like for like: P2 billed 21.98; kept with 4 MDE seats per quarter 34.5748,
    # 12.5948 more; on Plan 1 the same hours 1097.5 x 0.00672 = 7.3752, losing P2's features.
    assert "Microsoft billed $21.98 for 4 machines" in text
    assert "would have cost $34.57: $12.59 more than the bill" in text
    assert "The same hours on Plan 1 would have cost $7.38" in text
    assert "premium vulnerability management" in text
    assert "Month to date" not in text  # October's cost data is complete
    assert "<script>throw new Error('unescaped text')</script>" in text


def test_the_screenshot_is_not_blank(browser_view):
    width, height, bpp, pixels = decode_png(browser_view["thumbnail"])
    assert width == VIEWPORT_WIDTH // 4
    assert height >= 500  # the whole page, not one blank viewport
    colours = {pixels[i : i + 3] for i in range(0, len(pixels), bpp)}
    white = sum(1 for i in range(0, len(pixels), bpp) if pixels[i : i + 3] == b"\xff\xff\xff")
    assert len(colours) > 200  # text anti-aliasing plus six chart colours
    assert white < 0.97 * width * height
