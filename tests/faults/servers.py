"""Private Redis, PostgreSQL and S3 servers that a fault test may kill and restart.

Each listens on a free port of its own, so killing it touches no other test
and no shared service.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from moto.server import ThreadedMotoServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


class RedisServer:
    """``redis-server`` in ``folder``; with ``keep_data`` every write goes to an
    append-only file synced at once, so a SIGKILL loses nothing."""

    def __init__(self, folder: Path, *, keep_data: bool) -> None:
        self.folder = folder
        self.keep_data = keep_data
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"]
        if not self.keep_data:
            persistence = ["--appendonly", "no"]
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--dir", str(self.folder), "--save", "", *persistence]
        with (self.folder / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        _wait_for_port(self.port)

    def kill(self) -> None:
        """SIGKILL: no shutdown save, exactly what a crash or an OOM kill leaves."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@contextmanager
def redis_server(folder: Path, *, keep_data: bool) -> Iterator[RedisServer]:
    server = RedisServer(folder, keep_data=keep_data)
    server.start()
    try:
        yield server
    finally:
        server.kill()


class PostgresServer:
    """A cluster of our own (``initdb``) on a free port, run as the ``postgres`` user
    when we are root (PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        # Not pytest's tmp_path: its root-only parents would keep the postgres user out.
        self.folder = Path(tempfile.mkdtemp(prefix="docintel-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        binary = shutil.which(argv[0]) or argv[0]
        subprocess.run([*as_owner, binary, *argv[1:]], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "postgres.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: every backend dies at once and recovery runs at the next start,
        as after a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def log(self) -> str:
        path = self.folder / "postgres.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)


class S3Server:
    """moto's S3 in this process, stoppable and restartable on the same port.

    Its buckets live in this process, not in the HTTP server: a restart keeps
    them, as a real S3 endpoint that was unreachable for a while still has them.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self._server: ThreadedMotoServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        _wait_for_port(self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` refuse writes for a while, even to root.

    As root, permissions stop nothing: a read-only bind mount over the folder does,
    as a volume remounted read-only would. Others drop the write bits instead.
    """
    if os.geteuid() != 0:
        folders = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
        for path in folders:
            path.chmod(0o555)
        try:
            yield
        finally:
            for path in folders:
                path.chmod(0o755)
        return
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield
    finally:
        # A worker may have a file of the folder open at this instant ("target is
        # busy"): detached lazily, the mount goes once it is closed, and the folder
        # under it (the same one) takes writes again at once.
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", str(folder)], check=True)
