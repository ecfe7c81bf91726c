"""The HTTPS server that answers like Azure Resource Manager, as of a movable clock.

Loopback only, TLS from a throwaway `trustme` CA (azure-core refuses bearer tokens over plain
http), a static bearer token, stdlib `ThreadingHTTPServer`. Every answer is computed from the
`Estate` as of `clock`: machines that exist then, their power state then, Activity Log events up
to then (90-day retention), cost rows as they were reported then.
"""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import polars as pl
import trustme

from flows.config import STATIC_TOKEN_ENV, Settings, load_settings
from flows.simulator import billing, exports, plans, wire, workspace
from flows.simulator.catalog import CURRENCY_RATES, retail_items
from flows.simulator.estate import Estate
from flows.simulator.model import MachineSpec, ScaleSetSpec, SubscriptionSpec
from flows.simulator.queries import (
    BadRequest,
    activity_log_filter,
    parse_cost_query,
    query_units,
    retail_predicate,
    run_cost_query,
    select_fields,
)
from flows.simulator.quota import QpuQuota

# The simulator runs Cost Management's QPU windows this many times as fast as Azure (an hour in
# 36 s), and says so in the mdecost.toml it writes, so tests and the benchmark pace in seconds.
QPU_SCALE = 0.01
# Cost query results kept for their later pages.
QUERY_RESULTS_KEPT = 16
# The token the simulator accepts when MDECOST_STATIC_TOKEN is not set. It only ever opens the
# simulator on loopback; the config refuses a static token for any other endpoint.
DEVELOPMENT_TOKEN = "mdecost-simulator-development-token"
COST_RETRY_AFTER_HEADERS = (
    "x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after",
    "x-ms-ratelimit-microsoft.costmanagement-entity-retry-after",
    "x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after",
    "x-ms-ratelimit-microsoft.costmanagement-clienttype-retry-after",
)


FAULT_KINDS = (
    "server_error",
    "throttled",
    "stall",
    "truncated_json",
    "extra_column",
    "empty_page",
    "repeated_link",
)
# Routes that page with a nextLink (paging faults can only be served where pages exist).
PAGED_ROUTES = (
    "subscriptions_list",
    "vm_list",
    "vmss_list",
    "vmss_vm_list",
    "arc_machine_list",
    "activity_log",
    "cost_query",
)
PAGING_FAULTS = ("empty_page", "repeated_link")


@dataclass
class InjectedFault:
    """One kind of fault served on one route, `times` more times (None: until `reset()`).

    - `server_error`: answer `status` (5xx) with an ARM error body and no retry-after header.
    - `throttled`: answer 429 with an error body and no retry-after header (a client must back
      off on its own).
    - `stall`: wait `stall_seconds` before answering (normally, if the client is still there):
      longer than the client's read timeout, it is a timeout.
    - `truncated_json`: the right status and headers, but only the first half of the JSON body
      (Content-Length matches what is sent, so only the JSON is broken, not HTTP).
    - `extra_column` (`cost_query` only): `extra_column` (name, Query API type) inserted as the
      FIRST column of the result, with a value in every row, so rows read by position shift.
    - `empty_page` (paged routes only): no items, and a nextLink (a new skiptoken each time) to
      the page that should have come, so nothing is lost by a client that follows it.
    - `repeated_link` (paged routes only): the page's items, but a nextLink back to the page
      itself (the request's own URL): a client that follows it reads the same page again.
    """

    kind: str
    route: str
    times: int | None = None
    status: int = 503
    stall_seconds: float = 5.0
    extra_column: tuple[str, str] = ("BillingPeriod", "String")

    def extra_value(self) -> str | float:
        return 1.0 if self.extra_column[1].lower() == "number" else "extra"


@dataclass
class Faults:
    """Mutable fault controls. `cost_429_rate` throttles that share of cost queries, in a
    deterministic sequence (the first query is throttled whenever the rate is above zero).
    `inject(...)` adds an `InjectedFault` on a route; the first injected fault still pending for
    a route is served (and counted in `requests` as `fault_<kind>`) before the route answers."""

    cost_429_rate: float = 0.0
    # The largest retry-after the 429 carries (tenant); the others carry one second less, so a
    # client that reads only the qpu header waits too little.
    cost_retry_after_seconds: int = 1
    injected: list[InjectedFault] = field(default_factory=list)
    _cost_queries_seen: int = field(default=0, repr=False)
    _rate_seen: float = field(default=0.0, repr=False)

    def throttle_next_cost_query(self) -> bool:
        if self.cost_429_rate != self._rate_seen:
            self._rate_seen = self.cost_429_rate
            self._cost_queries_seen = 0
        n = self._cost_queries_seen
        self._cost_queries_seen += 1
        rate = min(max(self.cost_429_rate, 0.0), 1.0)
        # Throttle query n when the running count of throttles ceil((n + 1) * rate) grows.
        return _ceil(rate * (n + 1)) > _ceil(rate * n)

    def inject(
        self,
        kind: str,
        route: str = "cost_query",
        *,
        times: int | None = None,
        status: int = 503,
        stall_seconds: float = 5.0,
        extra_column: tuple[str, str] = ("BillingPeriod", "String"),
    ) -> InjectedFault:
        """Serve `kind` on the next `times` requests to `route` (None: every one until reset).

        `route` is a route name as counted in `SimulatedAzure.requests` (`cost_query`,
        `vm_list`, `activity_log`, `pricings`, ...).
        """
        routes = {name for _, _, _, name in _ROUTES}
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind {kind!r} is not one of {', '.join(FAULT_KINDS)}")
        if route not in routes:
            raise ValueError(f"route {route!r} is not one of {', '.join(sorted(routes))}")
        if kind in PAGING_FAULTS and route not in PAGED_ROUTES:
            raise ValueError(f"{route} does not page; {kind} fits {', '.join(PAGED_ROUTES)}")
        if kind == "extra_column" and route != "cost_query":
            raise ValueError("an extra column is a Query API fault: use route 'cost_query'")
        if kind == "server_error" and not 500 <= status <= 599:
            raise ValueError(f"a server error has a 5xx status, got {status}")
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 (or None for every request), got {times}")
        fault = InjectedFault(kind, route, times, status, stall_seconds, extra_column)
        self.injected.append(fault)
        return fault

    def take(self, route: str) -> InjectedFault | None:
        """The fault to serve on this request to `route`, if any (one use of it is spent)."""
        for fault in self.injected:
            if fault.route != route:
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times == 0:
                    self.injected.remove(fault)
            return fault
        return None


def _ceil(value: float) -> int:
    whole = int(value)
    return whole + (value - whole > 1e-9)


@dataclass
class PageSizes:
    """How many items each paged API returns per page (small, so paging is exercised)."""

    subscriptions_list: int = 50
    # Every Compute list: VMs, scale sets, scale-set VMs.
    vm_list: int = 10
    activity_log: int = 200
    cost_query: int = 1000
    # Rows per Logs query answer; more is a partial answer (the service's limit is 500,000).
    log_analytics_rows: int = workspace.MAX_ROWS
    retail_prices: int = 7


_ROUTES: list[tuple[str, str, re.Pattern[str], str]] = []


def _route(method: str, pattern: str, name: str) -> Callable:
    def register(handler: Callable) -> Callable:
        _ROUTES.append((method, handler.__name__, re.compile(pattern, re.IGNORECASE), name))
        return handler

    return register


_SUB = r"/subscriptions/(?P<sub>[^/]+)"
_RG = r"/resourcegroups/(?P<rg>[^/]+)"
_COMPUTE = r"/providers/microsoft\.compute"
_HYBRID = r"/providers/microsoft\.hybridcompute"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    # The injected fault altering the request being answered (set per request).
    fault: InjectedFault | None = None

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests and the demo print their own summaries."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    # -- plumbing ------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        try:
            self._answer(method)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            # The client gave up (a read timeout during a stall): nobody to answer.
            self.close_connection = True

    def _answer(self, method: str) -> None:
        sim = self.server.simulator
        self.fault = None
        split = urlsplit(self.path)
        path = re.sub(r"/{2,}", "/", split.path).rstrip("/") or "/"
        self.query = dict(parse_qsl(split.query, keep_blank_values=True))
        self.request_path = path
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        try:
            if path.lower() == "/api/retail/prices" and method == "GET":
                sim.count("retail_prices")
                self._send(200, sim.retail_prices(self.query))
                return
            if not self._authorised():
                sim.count("unauthorized")
                self._send(
                    401,
                    wire.error_body(
                        "InvalidAuthenticationToken",
                        "The access token is missing or invalid.",
                    ),
                    {
                        "WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/'
                        f'{sim.estate.tenant_id}", error="invalid_token", '
                        'error_description="The access token is missing or invalid."'
                    },
                )
                return
            for route_method, handler_name, pattern, name in _ROUTES:
                match = pattern.match(path)
                if match and route_method == method:
                    sim.count(name)
                    self.fault = sim.take_fault(name)
                    if self._serve_fault():
                        return
                    getattr(self, handler_name)(**match.groupdict())
                    return
            sim.count("not_found")
            if any(pattern.match(path) for _, _, pattern, _ in _ROUTES):
                self._send(
                    405,
                    wire.error_body(
                        "MethodNotAllowed", f"The simulated estate is read-only: {method} {path}"
                    ),
                )
                return
            self._send(
                404,
                wire.error_body(
                    "NotFound",
                    f"No HTTP resource was found that matches the request URI '{path}'.",
                ),
            )
        except BadRequest as error:
            self._send(400, wire.error_body(error.code, str(error)))
        except _NotFound as error:
            sim.count("not_found")
            self._send(404, wire.error_body(error.code, str(error)))

    def _serve_fault(self) -> bool:
        """Serve the injected fault that replaces the answer (True), or prepare one that alters
        it (False: the route answers, altered by `_send`, `_page` or the cost query)."""
        fault = self.fault
        if fault is None:
            return False
        self.server.simulator.count(f"fault_{fault.kind}")
        if fault.kind == "server_error":
            code = {502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout"}
            self._send(
                fault.status,
                wire.error_body(
                    code.get(fault.status, "InternalServerError"),
                    "The simulated service failed (injected fault).",
                ),
            )
            return True
        if fault.kind == "throttled":
            self._send(
                429,
                wire.error_body("ThrottledError", "Too many requests (injected fault)."),
            )
            return True
        if fault.kind == "stall":
            time.sleep(fault.stall_seconds)
        return False

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and token == self.server.simulator.token

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        if self.fault is not None and self.fault.kind == "truncated_json" and status < 300:
            payload = payload[: len(payload) // 2]
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-ms-request-id", _request_id())
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _page(self, items: list[Any] | pl.DataFrame, size: int) -> tuple[Any, str | None]:
        """Slice the page `$skiptoken` points at; the link to the next page, or None."""
        offset = _decode_skiptoken(self.query.get("$skiptoken"))
        if self.fault is not None and self.fault.kind == "empty_page":
            params = {k: v for k, v in self.query.items() if k != "$skiptoken"}
            params["$skiptoken"] = _encode_skiptoken(offset, detour=uuid.uuid4().hex)
            return items[0:0], self._link(params)
        page = items[offset : offset + size]
        if self.fault is not None and self.fault.kind == "repeated_link":
            return page, self._link(dict(self.query))
        if offset + size >= len(items):
            return page, None
        params = {k: v for k, v in self.query.items() if k != "$skiptoken"}
        params["$skiptoken"] = _encode_skiptoken(offset + size)
        return page, self._link(params)

    def _link(self, params: dict[str, str]) -> str:
        return (
            f"{self.server.simulator.arm_endpoint}{self.request_path}?"
            f"{urlencode(params, quote_via=quote, safe='')}"
        )

    # -- subscriptions -------------------------------------------------------------------------
    @_route("GET", r"^/subscriptions$", "subscriptions_list")
    def subscriptions_list(self) -> None:
        sim = self.server.simulator
        page, next_link = self._page(
            sim.estate.subscription_specs, sim.page_sizes.subscriptions_list
        )
        value = [wire.subscription_json(s, sim.estate.tenant_id) for s in page]
        self._send(200, {"value": value, **({"nextLink": next_link} if next_link else {})})

    @_route("GET", rf"^{_SUB}$", "subscription_get")
    def subscription_get(self, sub: str) -> None:
        sim = self.server.simulator
        self._send(200, wire.subscription_json(sim.subscription(sub), sim.estate.tenant_id))

    # -- resource groups -----------------------------------------------------------------------
    @_route("GET", rf"^{_SUB}/resourcegroups$", "resource_groups_list")
    def resource_groups_list(self, sub: str) -> None:
        sim = self.server.simulator
        subscription = sim.subscription(sub)
        groups = sim.estate.resource_groups(subscription.subscription_id)
        page, next_link = self._page(groups, sim.page_sizes.subscriptions_list)
        value = [wire.resource_group_json(subscription, name, tags) for name, tags in page]
        self._send(200, {"value": value, **({"nextLink": next_link} if next_link else {})})

    # -- compute -------------------------------------------------------------------------------
    @_route("GET", rf"^{_SUB}(?:{_RG})?{_COMPUTE}/virtualmachines$", "vm_list")
    def vm_list(self, sub: str, rg: str | None = None) -> None:
        sim = self.server.simulator
        alive = sim.alive(sub, rg).filter(pl.col("machine_kind") == "vm")
        with_view = (
            self.query.get("statusOnly", "").lower() == "true"
            or self.query.get("$expand", "").lower() == "instanceview"
        )
        page, next_link = self._page(alive, sim.page_sizes.vm_list)
        value = [
            wire.vm_json(
                sim.machine(row["resource_id"]), row["state"], with_instance_view=with_view
            )
            for row in page.iter_rows(named=True)
        ]
        self._send(200, {"value": value, **({"nextLink": next_link} if next_link else {})})

    @_route("GET", rf"^{_SUB}{_RG}{_COMPUTE}/virtualmachines/(?P<vm>[^/]+)$", "vm_get")
    def vm_get(self, sub: str, rg: str, vm: str) -> None:
        machine, state = self.server.simulator.find_vm(sub, rg, vm)
        with_view = self.query.get("$expand", "").lower() == "instanceview"
        self._send(200, wire.vm_json(machine, state, with_instance_view=with_view))

    @_route(
        "GET",
        rf"^{_SUB}{_RG}{_COMPUTE}/virtualmachines/(?P<vm>[^/]+)/instanceview$",
        "vm_instance_view",
    )
    def vm_instance_view(self, sub: str, rg: str, vm: str) -> None:
        machine, state = self.server.simulator.find_vm(sub, rg, vm)
        self._send(200, wire.instance_view_json(machine, state))

    @_route(
        "GET",
        rf"^{_SUB}{_RG}{_COMPUTE}/virtualmachines/(?P<vm>[^/]+)/extensions(?:/(?P<ext>[^/]+))?$",
        "vm_extensions",
    )
    def vm_extensions(self, sub: str, rg: str, vm: str, ext: str | None = None) -> None:
        machine, _ = self.server.simulator.find_vm(sub, rg, vm)
        self._extensions(machine, ext)

    def _extensions(self, machine: MachineSpec, ext: str | None) -> None:
        names = wire.extension_names(machine)
        if ext is None:
            self._send(200, {"value": [wire.extension_json(machine, n) for n in names]})
            return
        for name in names:
            if name.lower() == ext.lower():
                self._send(200, wire.extension_json(machine, name))
                return
        raise _NotFound(
            "NotFound", f"The entity was not found: extension '{ext}' on {machine.arm_id}."
        )

    @_route("GET", rf"^{_SUB}(?:{_RG})?{_COMPUTE}/virtualmachinescalesets$", "vmss_list")
    def vmss_list(self, sub: str, rg: str | None = None) -> None:
        sim = self.server.simulator
        page, next_link = self._page(sim.scale_sets(sub, rg), sim.page_sizes.vm_list)
        value = [wire.vmss_json(ss, capacity) for ss, capacity in page]
        self._send(200, {"value": value, **({"nextLink": next_link} if next_link else {})})

    @_route("GET", rf"^{_SUB}{_RG}{_COMPUTE}/virtualmachinescalesets/(?P<ss>[^/]+)$", "vmss_get")
    def vmss_get(self, sub: str, rg: str, ss: str) -> None:
        scale_set, capacity = self.server.simulator.find_scale_set(sub, rg, ss)
        self._send(200, wire.vmss_json(scale_set, capacity))

    @_route(
        "GET",
        rf"^{_SUB}{_RG}{_COMPUTE}/virtualmachinescalesets/(?P<ss>[^/]+)/virtualmachines$",
        "vmss_vm_list",
    )
    def vmss_vm_list(self, sub: str, rg: str, ss: str) -> None:
        sim = self.server.simulator
        scale_set, _ = sim.find_scale_set(sub, rg, ss)
        alive = sim.alive(sub, rg).filter(
            (pl.col("machine_kind") == "vmss_instance")
            & (pl.col("scale_set_name").str.to_lowercase() == scale_set.name.lower())
        )
        with_view = self.query.get("$expand", "").lower() == "instanceview"
        page, next_link = self._page(alive, sim.page_sizes.vm_list)
        value = [
            wire.vmss_vm_json(
                sim.machine(row["resource_id"]), row["state"], with_instance_view=with_view
            )
            for row in page.iter_rows(named=True)
        ]
        self._send(200, {"value": value, **({"nextLink": next_link} if next_link else {})})

    @_route(
        "GET",
        rf"^{_SUB}{_RG}{_COMPUTE}/virtualmachinescalesets/(?P<ss>[^/]+)/virtualmachines/"
        r"(?P<instance>[^/]+)(?P<tail>/instanceview|/extensions(?:/(?P<ext>[^/]+))?)?$",
        "vmss_vm_get",
    )
    def vmss_vm_get(
        self, sub: str, rg: str, ss: str, instance: str, tail: str | None, ext: str | None
    ) -> None:
        sim = self.server.simulator
        scale_set, _ = sim.find_scale_set(sub, rg, ss)
        machine, state = sim.find_machine(f"{scale_set.arm_id}/virtualMachines/{instance}")
        if not tail:
            with_view = self.query.get("$expand", "").lower() == "instanceview"
            self._send(200, wire.vmss_vm_json(machine, state, with_instance_view=with_view))
        elif tail.lower() == "/instanceview":
            self._send(200, wire.instance_view_json(machine, state))
        else:
            self._extensions(machine, ext)

    # -- hybrid compute (Azure Arc) ------------------------------------------------------------
    @_route("GET", rf"^{_SUB}(?:{_RG})?{_HYBRID}/machines$", "arc_machine_list")
    def arc_machine_list(self, sub: str, rg: str | None = None) -> None:
        sim = self.server.simulator
        alive = sim.alive(sub, rg).filter(pl.col("machine_kind") == "arc")
        page, next_link = self._page(alive, sim.page_sizes.vm_list)
        value = [
            wire.arc_machine_json(
                sim.machine(row["resource_id"]),
                row["state"],
                row["state_since"],
                sim.estate.tenant_id,
            )
            for row in page.iter_rows(named=True)
        ]
        self._send(200, {"value": value, **({"nextLink": next_link} if next_link else {})})

    @_route(
        "GET",
        rf"^{_SUB}{_RG}{_HYBRID}/machines/(?P<name>[^/]+)(?P<tail>/extensions(?:/(?P<ext>[^/]+))?)?$",
        "arc_machine_get",
    )
    def arc_machine_get(
        self, sub: str, rg: str, name: str, tail: str | None, ext: str | None
    ) -> None:
        sim = self.server.simulator
        sim.subscription(sub)
        arm_id = (
            f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.HybridCompute/"
            f"machines/{name}"
        )
        machine, _ = sim.find_machine(arm_id)
        if tail:
            self._extensions(machine, ext)
            return
        row = sim.alive(sub, rg).filter(pl.col("resource_id") == arm_id.lower()).row(0, named=True)
        self._send(
            200,
            wire.arc_machine_json(machine, row["state"], row["state_since"], sim.estate.tenant_id),
        )

    # -- monitor -------------------------------------------------------------------------------
    @_route(
        "GET",
        rf"^{_SUB}/providers/microsoft\.insights/eventtypes/management/values$",
        "activity_log",
    )
    def activity_log(self, sub: str) -> None:
        sim = self.server.simulator
        subscription = sim.subscription(sub)
        predicate = activity_log_filter(self.query.get("$filter"))
        events = sim.estate.served_events(sim.clock).filter(
            (pl.col("subscription_id") == subscription.subscription_id) & predicate
        )
        page, next_link = self._page(events, sim.page_sizes.activity_log)
        select = self.query.get("$select")
        value = [
            select_fields(wire.event_json(row, sim.estate.tenant_id), select)
            for row in page.iter_rows(named=True)
        ]
        self._send(200, {"value": value, **({"nextLink": next_link} if next_link else {})})

    # -- cost management -----------------------------------------------------------------------
    @_route("POST", rf"^{_SUB}(?:{_RG})?/providers/microsoft\.costmanagement/query$", "cost_query")
    def cost_query(self, sub: str, rg: str | None = None) -> None:
        sim = self.server.simulator
        subscription = sim.subscription(sub)

        def rows() -> pl.DataFrame:
            mine = sim.estate.cost_rows(as_of=sim.clock).filter(
                pl.col("subscription_id") == subscription.subscription_id
            )
            return mine if rg is None else mine.filter(pl.col("resource_group") == rg.lower())

        self._cost_answer(f"subscriptions/{subscription.subscription_id}", rows)

    @_route(
        "POST",
        r"^/providers/microsoft\.billing/billingaccounts/(?P<account>[^/]+)"
        r"(?:/billingprofiles/(?P<profile>[^/]+))?/providers/microsoft\.costmanagement/query$",
        "cost_query",
    )
    def billing_cost_query(self, account: str, profile: str | None = None) -> None:
        """A billing account's (EA) or billing profile's (MCA) rows: every subscription's."""
        sim = self.server.simulator
        layout = sim.billing
        asked = f"{billing.BILLING}/{account}" + (f"/billingProfiles/{profile}" if profile else "")
        if asked.lower() not in {s.lower() for s in (layout.account_id, layout.profile_id) if s}:
            raise _NotFound("BillingAccountNotFound", f"The scope '{asked}' was not found.")
        if layout.agreement == billing.MCA and profile is None:
            raise BadRequest(
                "Cost queries of a Microsoft Customer Agreement are asked at a billing profile.",
                "BillingScopeNotSupported",
            )
        self._cost_answer(asked.lstrip("/"), lambda: sim.estate.cost_rows(as_of=sim.clock))

    @_route(
        "POST",
        r"^/providers/microsoft\.management/managementgroups/(?P<group>[^/]+)"
        r"/providers/microsoft\.costmanagement/query$",
        "cost_query",
    )
    def group_cost_query(self, group: str) -> None:
        """A management group's rows (EA and pay-as-you-go only, as Azure: not MCA)."""
        sim = self.server.simulator
        if sim.billing.agreement == billing.MCA:
            raise BadRequest(
                "Management group scope is not supported for Microsoft Customer Agreement "
                "billing accounts.",
                "ManagementGroupScopeNotSupported",
            )
        try:
            members = billing.subscriptions_under(
                sim.estate.subscription_specs, group, sim.estate.tenant_id
            )
        except KeyError:
            raise _NotFound(
                "ManagementGroupNotFound", f"The management group '{group}' was not found."
            ) from None
        ids = [s.subscription_id for s in members]
        self._cost_answer(
            f"providers/Microsoft.Management/managementGroups/{group}",
            lambda: sim.estate.cost_rows(as_of=sim.clock).filter(
                pl.col("subscription_id").is_in(ids)
            ),
        )

    def _cost_answer(self, scope: str, rows: Callable[[], pl.DataFrame]) -> None:
        """Answer a Query API request over the scope's `rows`: throttling, quota, paging.

        A query costs one QPU per month of data it spans; the pages after the first (asked with
        the `$skiptoken` of a nextLink) are served from the first page's result and cost none
        (mdecost's assumption: Microsoft documents the cost per month of data, not per page).
        """
        sim = self.server.simulator
        if sim.throttle_cost_query():
            sim.count("cost_query_429")
            seconds = sim.faults.cost_retry_after_seconds
            headers = {name: str(max(seconds - 1, 0)) for name in COST_RETRY_AFTER_HEADERS}
            headers[COST_RETRY_AFTER_HEADERS[2]] = str(seconds)
            self._send(
                429,
                wire.error_body("429", "Too many requests. Please retry after a while."),
                headers,
            )
            return
        try:
            body = json.loads(self.body or b"{}")
        except json.JSONDecodeError as error:
            raise BadRequest(f"The request body is not valid JSON: {error}") from None
        query = parse_cost_query(body, sim.clock)
        units = 0 if self.query.get("$skiptoken") else query_units(query)
        status, quota_headers = sim.quota.admit(sim.estate.tenant_id, units)
        if status == 429:
            sim.count("cost_query_429")
            self._send(
                429,
                wire.error_body("429", "Too many requests. Please retry after a while."),
                quota_headers,
            )
            return
        columns, frame = sim.query_result(
            (scope.lower(), self.body, sim.clock), lambda: run_cost_query(rows(), query)
        )
        page, next_link = self._page(frame, sim.page_sizes.cost_query)
        served_rows = [list(row) for row in page.iter_rows()]
        if self.fault is not None and self.fault.kind == "extra_column":
            name, kind = self.fault.extra_column
            columns = [{"name": name, "type": kind}, *columns]
            served_rows = [[self.fault.extra_value(), *row] for row in served_rows]
        query_id = _request_id()
        self._send(
            200,
            {
                "name": query_id,
                "type": "microsoft.costmanagement/Query",
                "id": f"{scope}/providers/Microsoft.CostManagement/Query/{query_id}",
                "properties": {
                    "columns": columns,
                    "nextLink": next_link,
                    "rows": served_rows,
                },
            },
            quota_headers,
        )

    # -- cost management exports ---------------------------------------------------------------
    @_route(
        "PUT",
        r"^(?P<scope>/subscriptions/[^/]+|/providers/microsoft\.billing/billingaccounts/[^/]+)"
        r"/providers/microsoft\.costmanagement/exports/(?P<name>[^/]+)$",
        "export_put",
    )
    def export_put(self, scope: str, name: str) -> None:
        sim = self.server.simulator
        try:
            body = json.loads(self.body or b"{}")
            properties = body["properties"]
            properties["definition"]["type"]
            properties["deliveryInfo"]["destination"]["container"]
        except (ValueError, KeyError, TypeError):
            raise BadRequest(
                "An export needs properties.definition and properties.deliveryInfo.destination"
            ) from None
        answer = {
            "id": f"{scope}/providers/Microsoft.CostManagement/exports/{name}",
            "name": name,
            "type": "Microsoft.CostManagement/exports",
            "properties": properties,
        }
        with sim._lock:
            sim.exports[f"{scope.lower()}|{name.lower()}"] = answer
        self._send(201, answer)

    @_route(
        "GET",
        r"^(?P<scope>/subscriptions/[^/]+|/providers/microsoft\.billing/billingaccounts/[^/]+)"
        r"/providers/microsoft\.costmanagement/exports/(?P<name>[^/]+)$",
        "export_get",
    )
    def export_get(self, scope: str, name: str) -> None:
        self._send(200, self.server.simulator.export(scope, name))

    @_route(
        "POST",
        r"^(?P<scope>/subscriptions/[^/]+|/providers/microsoft\.billing/billingaccounts/[^/]+)"
        r"/providers/microsoft\.costmanagement/exports/(?P<name>[^/]+)/run$",
        "export_run",
    )
    def export_run(self, scope: str, name: str) -> None:
        """Write a run of the export into its storage container (see `exports`)."""
        sim = self.server.simulator
        export = sim.export(scope, name)
        properties = export["properties"]
        destination = properties["deliveryInfo"]["destination"]
        if sim.export_storage is None:
            raise BadRequest(
                f"The storage account {destination.get('resourceId')} cannot be reached.",
                "StorageAccountUnreachable",
            )
        first, last = exports.period(properties["definition"], sim.clock)
        rows = sim.estate.cost_rows(as_of=sim.clock).filter(
            pl.col("usage_date").is_between(first, last)
        )
        if scope.lower().startswith("/subscriptions/"):
            rows = rows.filter(
                pl.col("subscription_id") == sim.subscription(scope[15:]).subscription_id
            )
        container = sim.export_storage(str(destination.get("resourceId")), destination["container"])
        exports.write_run(
            container,
            export["name"],
            export["id"].split("/providers/Microsoft.CostManagement/")[0],
            properties["definition"],
            str(destination.get("rootFolderPath") or ""),
            rows,
            first,
            last,
        )
        self._send(200, {})

    # -- billing accounts and management groups ------------------------------------------------
    @_route("GET", r"^/providers/microsoft\.billing/billingaccounts$", "billing_accounts")
    def billing_accounts(self) -> None:
        self._send(200, billing.billing_accounts_json(self.server.simulator.billing))

    @_route(
        "GET",
        r"^/providers/microsoft\.billing/billingaccounts/(?P<account>[^/]+)/billingprofiles$",
        "billing_profiles",
    )
    def billing_profiles(self, account: str) -> None:
        layout = self.server.simulator.billing
        if account.lower() != layout.account_name.lower():
            raise _NotFound(
                "BillingAccountNotFound", f"The billing account '{account}' was not found."
            )
        self._send(200, billing.billing_profiles_json(layout))

    @_route("GET", r"^/providers/microsoft\.management/managementgroups$", "management_groups")
    def management_groups(self) -> None:
        self._send(200, billing.management_groups_json(self.server.simulator.estate.tenant_id))

    @_route(
        "GET",
        r"^/providers/microsoft\.management/managementgroups/(?P<group>[^/]+)/descendants$",
        "management_group_descendants",
    )
    def management_group_descendants(self, group: str) -> None:
        estate = self.server.simulator.estate
        try:
            answer = billing.descendants_json(estate.subscription_specs, group, estate.tenant_id)
        except KeyError:
            raise _NotFound(
                "ManagementGroupNotFound", f"The management group '{group}' was not found."
            ) from None
        self._send(200, answer)

    # -- log analytics -------------------------------------------------------------------------
    @_route("POST", r"^/v1/workspaces/(?P<workspace_id>[^/]+)/query$", "log_analytics")
    def log_analytics(self, workspace_id: str) -> None:
        sim = self.server.simulator
        if workspace_id.lower() != workspace.WORKSPACE_ID:
            raise _NotFound(
                "WorkspaceNotFoundError", f"The workspace {workspace_id} could not be found."
            )
        try:
            body = json.loads(self.body or b"{}")
        except ValueError:
            raise BadRequest("The request body is not JSON.", "BadArgumentError") from None
        result = workspace.run_query(sim.workspace_rows(), body)
        self._send(200, workspace.answer(result, sim.page_sizes.log_analytics_rows))

    # -- security ------------------------------------------------------------------------------
    @_route(
        "GET",
        rf"^{_SUB}/providers/microsoft\.security/pricings(?:/(?P<name>[^/]+))?$",
        "pricings",
    )
    def pricings(self, sub: str, name: str | None = None) -> None:
        sim = self.server.simulator
        subscription = sim.subscription(sub)
        scope = f"/subscriptions/{subscription.subscription_id}"
        machines = wire.pricing_json(scope, plans.subscription_pricing(subscription, sim.clock))
        enabled = subscription.enablement_time or sim.estate.window_start - timedelta(days=365)
        every = [machines, *wire.other_pricings_json(subscription.subscription_id, enabled)]
        if name is None:
            self._send(200, {"value": every})
            return
        for pricing in every:
            if pricing["name"].lower() == name.lower():
                self._send(200, pricing)
                return
        raise _NotFound("PricingNotFound", f"The pricing '{name}' was not found in {scope}.")

    @_route(
        "GET",
        rf"^{_SUB}(?:{_RG})?/providers/microsoft\.security/securityconnectors$",
        "security_connectors",
    )
    def security_connectors(self, sub: str, rg: str | None = None) -> None:
        sim = self.server.simulator
        subscription = sim.subscription(sub)
        value = [
            wire.connector_json(connector)
            for connector in sim.estate.connector_specs
            if connector.subscription is subscription
            and connector.created_at <= sim.clock
            and (rg is None or connector.resource_group.lower() == rg.lower())
        ]
        self._send(200, {"value": value})

    @_route(
        "GET",
        rf"^(?P<resource>{_SUB}{_RG}/providers/microsoft\.(?:compute|hybridcompute)/.+?)"
        r"/providers/microsoft\.security/pricings"
        r"(?:/(?P<name>[^/]+))?$",
        "resource_pricings",
    )
    def resource_pricings(self, resource: str, sub: str, rg: str, name: str | None = None) -> None:
        """A machine's or a scale set's own setting, else what it inherits (and from where)."""
        sim = self.server.simulator
        target: MachineSpec | ScaleSetSpec
        try:
            target, _ = sim.find_machine(resource)
        except _NotFound:
            target, _ = sim.find_scale_set_by_id(resource)
        pricing = wire.pricing_json(
            target.arm_id,
            plans.resource_pricing(
                target, sim.clock, override_enabled_at=sim.estate.override_enabled_at
            ),
            resource_level=True,
        )
        if name is None:
            self._send(200, {"value": [pricing]})
        elif name.lower() == "virtualmachines":
            self._send(200, pricing)
        else:
            raise _NotFound(
                "PricingNotFound",
                f"The pricing '{name}' is not available at resource level for {target.arm_id}.",
            )


class _NotFound(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    simulator: SimulatedAzure


def _request_id() -> str:
    return str(uuid.uuid4())


def _encode_skiptoken(offset: int, detour: str | None = None) -> str:
    """The page at `offset`; a `detour` makes the token of an (injected) empty page unique."""
    token = {"offset": offset, **({"detour": detour} if detour else {})}
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode()


def _decode_skiptoken(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = int(json.loads(base64.urlsafe_b64decode(token.encode()))["offset"])
    except (ValueError, KeyError, TypeError):
        raise BadRequest(f"The $skiptoken {token!r} is invalid.", "InvalidSkipToken") from None
    if offset < 0:
        raise BadRequest(f"The $skiptoken {token!r} is invalid.", "InvalidSkipToken")
    return offset


class SimulatedAzure:
    """A running simulated Azure: endpoint, certificate, token, config, clock and faults.

    `requests` counts requests by route name (`vm_list`, `activity_log`, `cost_query`, ...);
    `cost_query` counts every cost query, throttled or not, and `cost_query_429` the throttled
    ones among them; `fault_<kind>` counts the injected faults served (`faults.inject`).
    `faults` and `page_sizes` are mutable; `reset()` restores the defaults and the clock (not
    the counters: compare before/after counts).
    """

    def __init__(
        self, estate: Estate, state_dir: Path, *, port: int = 0, history: bool = False
    ) -> None:
        self.estate = estate
        # Whether mdecost.toml names the simulated Log Analytics workspace in [history] (the
        # workspace is served either way).
        self.history = history
        self._workspace_rows: pl.DataFrame | None = None
        self.state_dir = Path(state_dir)
        self.token = os.environ.get(STATIC_TOKEN_ENV) or DEVELOPMENT_TOKEN
        self.faults = Faults()
        self.page_sizes = PageSizes()
        self.billing = billing.BillingLayout()
        # Cost Management's QPU windows, run QPU_SCALE times as fast (see `quota`); enforcing
        # them is switched on by the tests and benchmark that measure pacing.
        self.quota = QpuQuota(scale=QPU_SCALE)
        self.requests: Counter[str] = Counter()
        self._query_results: dict[tuple[str, bytes, datetime], Any] = {}
        # The Exports API's definitions, and where runs are written: a function giving the
        # container of a storage account (resource id, container), e.g. Azurite's; None: runs
        # are refused as unreachable storage.
        self.exports: dict[str, dict[str, Any]] = {}
        self.export_storage: exports.StorageFactory | None = None
        self._clock = estate.now
        self._lock = threading.Lock()
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.arm_endpoint = ""
        self.ca_bundle = self.state_dir / "ca.pem"
        self.config_path = self.state_dir / "mdecost.toml"

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> SimulatedAzure:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        authority = trustme.CA()
        certificate = authority.issue_cert("127.0.0.1", "localhost")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        certificate.configure_cert(context)
        authority.cert_pem.write_to_path(str(self.ca_bundle))
        server = _Server(("127.0.0.1", self._requested_port), _Handler)
        # Handshake in the request thread, so one slow client cannot stall the accept loop.
        server.socket = context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
        server.simulator = self
        self._server = server
        self.arm_endpoint = f"https://127.0.0.1:{server.server_address[1]}"
        self._write_config()
        self._thread = threading.Thread(
            target=server.serve_forever, name="simulated-azure", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self) -> None:
        """Block until interrupted (for `mdecost simulator serve`)."""
        if self._thread is None:
            raise RuntimeError("start() the simulator first")
        try:
            while self._thread.is_alive():
                self._thread.join(timeout=0.5)
        finally:
            self.stop()

    def _write_config(self) -> None:
        # Paths are relative to the config file, which flows.config resolves.
        self.config_path.write_text(
            "# Written by `mdecost simulator`: points mdecost at the simulated estate.\n"
            "[azure]\n"
            f'arm_endpoint = "{self.arm_endpoint}"\n'
            'ca_bundle = "ca.pem"\n'
            'credential = "static_token"\n'
            f'static_token = "{self.token}"\n'
            "scopes = []\n"
            f"\n[collect]\nqpu_window_scale = {self.quota.scale}\n"
            '\n[lake]\npath = "lake"\n'
            '\n[warehouse]\npath = "warehouse.duckdb"\n'
            '\n[report]\npath = "reports"\n'
            'group_by = ["tag:CostCenter", "resource_group"]\n'
            "\n[pricing]\n"
            f'retail_prices_endpoint = "{self.arm_endpoint}/api/retail/prices"\n'
            + (
                "\n[history]\n"
                f'workspaces = ["{workspace.WORKSPACE_ID}"]\n'
                f'log_analytics_endpoint = "{self.arm_endpoint}"\n'
                if self.history
                else ""
            )
        )

    def settings(self) -> Settings:
        return load_settings(self.config_path)

    # -- clock and faults ----------------------------------------------------------------------
    @property
    def clock(self) -> datetime:
        return self._clock

    def set_clock(self, clock: datetime) -> None:
        """Answer as of `clock` from now on (between the window's start and `estate.now`)."""
        if clock.tzinfo is None:
            raise ValueError(f"clock must be timezone-aware (UTC), got {clock!r}")
        clock = clock.astimezone(UTC)
        if not self.estate.window_start <= clock <= self.estate.now:
            raise ValueError(
                f"clock {clock} is outside the simulated window "
                f"[{self.estate.window_start}, {self.estate.now}]"
            )
        self._clock = clock

    def reset(self) -> None:
        """Back to the estate's present with no faults and default page sizes."""
        self._clock = self.estate.now
        self.faults = Faults()
        self.page_sizes = PageSizes()
        self.billing = billing.BillingLayout()
        self.quota = QpuQuota(scale=self.quota.scale)

    def count(self, route: str) -> None:
        with self._lock:
            self.requests[route] += 1

    def throttle_cost_query(self) -> bool:
        with self._lock:
            return self.faults.throttle_next_cost_query()

    def query_result(
        self,
        key: tuple[str, bytes, datetime],
        compute: Callable[[], tuple[list[dict[str, str]], pl.DataFrame]],
    ) -> tuple[list[dict[str, str]], pl.DataFrame]:
        """A cost query's result, computed once for all its pages (the last few kept)."""
        with self._lock:
            known = self._query_results.get(key)
        if known is not None:
            return known
        result = compute()
        with self._lock:
            self._query_results[key] = result
            while len(self._query_results) > QUERY_RESULTS_KEPT:
                self._query_results.pop(next(iter(self._query_results)))
        return result

    def export(self, scope: str, name: str) -> dict[str, Any]:
        with self._lock:
            found = self.exports.get(f"{scope.lower()}|{name.lower()}")
        if found is None:
            raise _NotFound("NotFound", f"The export '{name}' of '{scope}' was not found.")
        return found

    def take_fault(self, route: str) -> InjectedFault | None:
        with self._lock:
            return self.faults.take(route)

    # -- lookups as of the clock ---------------------------------------------------------------
    def workspace_rows(self) -> pl.DataFrame:
        """The simulated workspace's `AzureActivity` rows as of the clock (see `workspace`)."""
        with self._lock:
            if self._workspace_rows is None:
                self._workspace_rows = workspace.activity_rows(self.estate.activity_events())
        return self._workspace_rows.filter(pl.col("TimeGenerated") <= self._clock)

    def subscription(self, subscription_id: str) -> SubscriptionSpec:
        spec = self.estate.subscription_by_id.get(subscription_id.lower())
        if spec is None:
            raise _NotFound(
                "SubscriptionNotFound", f"The subscription '{subscription_id}' could not be found."
            )
        return spec

    def alive(self, subscription_id: str, resource_group: str | None) -> pl.DataFrame:
        subscription = self.subscription(subscription_id)
        alive = self.estate.alive_at(self._clock).filter(
            pl.col("subscription_id") == subscription.subscription_id
        )
        if resource_group is not None:
            alive = alive.filter(
                pl.col("resource_group").str.to_lowercase() == resource_group.lower()
            )
        return alive

    def machine(self, resource_id: str) -> MachineSpec:
        return self.estate.machine_by_id[resource_id.lower()].machine

    def find_machine(self, arm_id: str) -> tuple[MachineSpec, str]:
        """The machine at `arm_id` and its state at the clock, or ARM's ResourceNotFound."""
        timeline = self.estate.machine_by_id.get(arm_id.lower().rstrip("/"))
        if timeline is not None:
            self.subscription(timeline.machine.subscription.subscription_id)
            alive = self.estate.alive_at(self._clock).filter(
                pl.col("resource_id") == arm_id.lower().rstrip("/")
            )
            if alive.height:
                return timeline.machine, alive["state"][0]
        raise _NotFound("ResourceNotFound", f"The Resource '{arm_id}' was not found.")

    def find_vm(
        self, subscription_id: str, resource_group: str, name: str
    ) -> tuple[MachineSpec, str]:
        self.subscription(subscription_id)
        arm_id = (
            f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
            f"/providers/Microsoft.Compute/virtualMachines/{name}"
        )
        return self.find_machine(arm_id)

    def scale_sets(
        self, subscription_id: str, resource_group: str | None
    ) -> list[tuple[ScaleSetSpec, int]]:
        subscription = self.subscription(subscription_id)
        alive = self.estate.alive_at(self._clock).filter(pl.col("machine_kind") == "vmss_instance")
        capacity = dict(
            alive.group_by(pl.col("scale_set_name").str.to_lowercase().alias("name"))
            .len()
            .iter_rows()
        )
        return [
            (ss, capacity.get(ss.name.lower(), 0))
            for ss in self.estate.scale_set_specs
            if ss.subscription is subscription
            and ss.created_at <= self._clock
            and (resource_group is None or ss.resource_group.lower() == resource_group.lower())
        ]

    def find_scale_set_by_id(self, arm_id: str) -> tuple[ScaleSetSpec, int]:
        """The scale set at `arm_id` (existing at the clock), or ARM's ResourceNotFound."""
        match = re.match(
            r"^/subscriptions/([^/]+)/resourcegroups/([^/]+)/providers/microsoft\.compute/"
            r"virtualmachinescalesets/([^/]+)$",
            arm_id.rstrip("/"),
            re.IGNORECASE,
        )
        if match is None:
            raise _NotFound("ResourceNotFound", f"The Resource '{arm_id}' was not found.")
        return self.find_scale_set(*match.groups())

    def find_scale_set(
        self, subscription_id: str, resource_group: str, name: str
    ) -> tuple[ScaleSetSpec, int]:
        for scale_set, capacity in self.scale_sets(subscription_id, resource_group):
            if scale_set.name.lower() == name.lower():
                return scale_set, capacity
        raise _NotFound(
            "ResourceNotFound",
            f"The Resource 'Microsoft.Compute/virtualMachineScaleSets/{name}' under resource "
            f"group '{resource_group}' was not found.",
        )

    # -- retail prices -------------------------------------------------------------------------
    def retail_prices(self, query: dict[str, str]) -> dict[str, Any]:
        currency = query.get("currencyCode", "USD").strip("'\"").upper()
        if currency not in CURRENCY_RATES:
            raise BadRequest(f"currencyCode {currency!r} is not supported")
        api_version = query.get("api-version", "")
        predicate = retail_predicate(
            query.get("$filter"), case_sensitive=api_version >= "2023-01-01-preview"
        )
        items = pl.DataFrame([item.as_json(currency) for item in retail_items()]).filter(predicate)
        try:
            skip = int(query.get("$skip", "0"))
        except ValueError:
            raise BadRequest(f"$skip {query.get('$skip')!r} is not a number") from None
        size = self.page_sizes.retail_prices
        page = items.slice(skip, size).to_dicts()
        next_link = None
        if skip + size < items.height:
            params = {k: v for k, v in query.items() if k != "$skip"}
            params["$skip"] = str(skip + size)
            next_link = (
                f"{self.arm_endpoint}/api/retail/prices?"
                f"{urlencode(params, quote_via=quote, safe='')}"
            )
        return {
            "BillingCurrency": currency,
            "CustomerEntityId": "Default",
            "CustomerEntityType": "Retail",
            "Items": page,
            "NextPageLink": next_link,
            "Count": len(page),
        }


@contextmanager
def simulated_azure(
    seed: int = 7,
    machines: int = 40,
    months: int = 4,
    now: datetime | None = None,
    state_dir: Path | None = None,
    *,
    port: int = 0,
    estate: Estate | None = None,
    history: bool = False,
) -> Iterator[SimulatedAzure]:
    """Generate an estate (or serve `estate`) and serve it on loopback for the `with` block.

    `now` defaults to the current hour (UTC); pass it for reproducible figures. `state_dir`
    (default: a temporary directory) receives ca.pem and mdecost.toml; with `history` the
    config names the simulated Log Analytics workspace in `[history]`.
    """
    if estate is None:
        if now is None:
            now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        estate = Estate.generate(seed=seed, machines=machines, months=months, now=now)
    with tempfile.TemporaryDirectory(prefix="mdecost-sim-") as scratch:
        simulator = SimulatedAzure(
            estate, Path(state_dir or scratch), port=port, history=history
        ).start()
        try:
            yield simulator
        finally:
            simulator.stop()
