"""Local stand-ins for the outside world of alerts and metrics: a real SMTP server (aiosmtpd)
and a real HTTP server, both on 127.0.0.1, started and stopped by the test."""

from __future__ import annotations

import email
import email.policy
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from conftest import Backend

FAIL = [sys.executable, "-c", "import sys; print('loading tenants'); sys.exit(3)"]
SUCCEED = [sys.executable, "-c", "print('loaded')"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port() -> int:
    """A port nothing listens on (bound then released, so nobody else got it in between)."""
    return free_port()


@dataclass
class Mail:
    raw: bytes
    rcpt_tos: list[str]

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[return-value]

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None
        return str(part.get_content()).replace("\r\n", "\n")


@dataclass
class SmtpSink:
    port: int
    mails: list[Mail] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(Mail(bytes(envelope.original_content or envelope.content), list(envelope.rcpt_tos)))
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        self.logins.append((data.login, data.password))
        return AuthResult(success=True)


@contextmanager
def smtp_server() -> Iterator[SmtpSink]:
    sink = SmtpSink(free_port())
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=sink.port,
        authenticator=sink.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpSink:
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    status: int = 200
    first: list[int] = field(default_factory=list)  # answers for the first requests, then `status`

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def http_server(status: int = 200) -> Iterator[HttpSink]:
    sink = HttpSink(status=status)

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            sink.requests.append(Request(self.command, self.path, dict(self.headers), body))
            self.send_response(sink.first.pop(0) if sink.first else sink.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = _record

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()


def warehouse(backend: Backend) -> list[str]:
    """Two small tables in a gold schema; returns their names as the protected set."""
    gold = backend.create_schema("gold")
    backend.sql(
        f"CREATE TABLE {backend.table(gold, 'moveouts')} (id INTEGER PRIMARY KEY, tenant VARCHAR(20))"
    )
    backend.sql(f"INSERT INTO {backend.table(gold, 'moveouts')} VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    backend.sql(f"CREATE TABLE {backend.table(gold, 'notices')} (id INTEGER PRIMARY KEY)")
    backend.sql(f"INSERT INTO {backend.table(gold, 'notices')} VALUES (1)")
    return [f"{gold}.moveouts", f"{gold}.notices"]
