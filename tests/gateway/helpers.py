"""Small sync HTTP helpers for the gateway integration tests (the gateway runs in a thread)."""

from __future__ import annotations

import http.client
import json
import socket
import socketserver
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    raw_headers: list[tuple[str, str]]

    def json(self) -> Any:
        return json.loads(self.body)


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def request(
    url: str,
    method: str = "GET",
    path: str = "/",
    body: Any = None,
    headers: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
    chunked: bool = False,
) -> Reply:
    own = conn is None
    c = conn or http.client.HTTPConnection(*host_port(url), timeout=30)
    try:
        c.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        resp = c.getresponse()
        data = resp.read()
        raw = [(k.lower(), v) for k, v in resp.getheaders()]
        return Reply(resp.status, dict(raw), data, raw)
    finally:
        if own:
            c.close()


def scrape(admin_url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics keyed by (series name, labels)."""
    text = urllib.request.urlopen(admin_url + "/metrics", timeout=10).read().decode()
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return metrics.get((name, frozenset(labels.items())))


@contextmanager
def tcp_server(handler: type[socketserver.BaseRequestHandler]) -> Iterator[int]:
    """A threaded TCP server on a free loopback port, for the life of the block."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def garbage_server(reply: bytes = b"NOT HTTP AT ALL\r\n\r\n", hold: float = 0.0) -> Iterator[int]:
    """A TCP server that answers every request with ``reply`` (by default not HTTP at all),
    then keeps the connection open for ``hold`` seconds."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            sock.recv(65536)
            sock.sendall(reply)
            if hold:
                threading.Event().wait(hold)

    with tcp_server(Handler) as port:
        yield port


@contextmanager
def scripted_server(respond: Callable[[bytes], tuple[bytes, bool]]) -> Iterator[int]:
    """A keep-alive TCP server for exact upstream bytes: every request head it reads (requests
    carry no body here) is answered with ``respond(head)``'s bytes, and the connection is closed
    after them when its flag says so."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    try:
                        chunk = sock.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                reply, close = respond(head)
                try:
                    sock.sendall(reply)
                except OSError:
                    return
                if close:
                    return

    with tcp_server(Handler) as port:
        yield port


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes the connection."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def request_path(head: bytes) -> bytes:
    """The request target of a raw request head."""
    return head.split(b" ", 2)[1]
