"""Throwaway MariaDB servers in temp datadirs, for tests that kill, pause or starve the server.

They never touch the shared server on port 3306. A template datadir is made once per session
with mariadb-install-db; each server copies it, so starting one takes about a second.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pymysql
import pytest

MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, template: Path, root: Path, extra: Sequence[str] = ()) -> None:
        self.root = root
        self.datadir = root / "data"
        shutil.copytree(template, self.datadir, symlinks=True)
        self.port = _free_port()
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = False  # once started, the port is the server's for good (see start)
        self.general_log = root / "general.log"
        self.tmpdir = root / "tmp"
        self.tmpdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"mariadb+pymysql://root@127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        """Start mariadbd and wait until it answers. The port was free when it was chosen, but
        another process (another xdist worker's throwaway server) may take it before mariadbd
        binds it: a first start then moves to another port; a restart keeps the port, which
        the test's URLs already name."""
        for _ in range(5):
            outcome = self._launch(timeout)
            if outcome == "started":
                self.started = True
                return
            if outcome != "port taken" or self.started:
                break
            self.port = _free_port()
        raise RuntimeError(f"mariadbd did not start ({outcome}): {self._error_log()[-2000:]}")

    def _launch(self, timeout: float) -> str:
        log_start = len(self._error_log())
        cmd = [
            MARIADBD,
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.root / 'mysqld.sock'}",
            f"--pid-file={self.root / 'mysqld.pid'}",
            # its own tmpdir: at startup mariadbd deletes every #sql* file in its tmpdir, which
            # with the default /tmp includes the shared server's in-use temporary tables
            f"--tmpdir={self.tmpdir}",
            "--user=root",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M",
            f"--log-error={self.root / 'error.log'}",
            "--skip-log-bin",
            "--max-connections=200",
            *self.extra,
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(pymysql.err.Error):
                if self._answering_datadir() == self.datadir.resolve():
                    return "started"
                self.proc.kill()  # someone else's server answers on our port
                self.proc.wait()
                return "port taken"
            if self.proc.poll() is not None:
                new_lines = self._error_log()[log_start:]
                return "port taken" if "Address already in use" in new_lines else "exited"
            time.sleep(0.1)
        return "timed out"

    def _answering_datadir(self) -> Path:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@datadir")
                (datadir,) = cur.fetchone()
        finally:
            conn.close()
        return Path(str(datadir)).resolve()

    def _error_log(self) -> str:
        path = self.root / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def connect(self) -> pymysql.connections.Connection:
        return pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user="root",
            password="",
            autocommit=True,
            charset="utf8mb4",
            connect_timeout=2,
        )

    def sql(self, statement: str, params: Sequence[object] = ()) -> list[tuple]:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(statement, tuple(params) or None)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def mariadb_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not Path(MARIADBD).exists():
        pytest.fail("mariadbd is not installed: run scripts/services (make test does)")
    root = tmp_path_factory.mktemp("mariadb-template")
    data = root / "data"
    subprocess.run(
        [
            INSTALL_DB,
            "--no-defaults",
            f"--datadir={data}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--user=root",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return data


@pytest.fixture
def throwaway(mariadb_template: Path, tmp_path: Path) -> Iterator[Server]:
    server = Server(mariadb_template, tmp_path / "mariadb")
    server.start()
    yield server
    server.stop()


def make_server(template: Path, root: Path, extra: Sequence[str] = ()) -> Server:
    server = Server(template, root, extra)
    server.start()
    return server
