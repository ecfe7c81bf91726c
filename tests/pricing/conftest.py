"""A loopback HTTPS server standing in for the Azure Retail Prices API, serving recorded pages."""

import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme

FIXTURES = Path(__file__).parents[1] / "fixtures" / "pricing"

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class RetailApi:
    """A loopback HTTPS server answering GETs with `responder(path_and_query, request_number)`."""

    base: str
    ca_bundle: Path
    responder: Callable[[str, int], Answer]
    requests: list[str] = field(default_factory=list)

    def recorded_pages(self, path: str, _: int) -> Answer:
        skip = parse_qs(urlsplit(path).query).get("$skip", ["0"])[0]
        page = {"0": "retail_page1.json", "8": "retail_page2.json", "16": "retail_page3.json"}[skip]
        return 200, {}, (FIXTURES / page).read_text().replace("{base}", self.base).encode()


@pytest.fixture
def retail_api(tmp_path) -> Iterator[RetailApi]:
    authority = trustme.CA()
    ca_bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_bundle))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)

    api: RetailApi

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            api.requests.append(self.path)
            status, headers, body = api.responder(self.path, len(api.requests))
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    base = f"https://127.0.0.1:{server.server_address[1]}/api/retail/prices"
    api = RetailApi(base=base, ca_bundle=ca_bundle, responder=lambda path, n: (500, {}, b""))
    api.responder = api.recorded_pages
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield api
    server.shutdown()
    server.server_close()
