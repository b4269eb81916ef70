"""A real HTTP receiver on loopback that records what it is sent and fails on demand."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int


class Receiver:
    """``with Receiver(fail_first={"/a"}) as r``: the first POST of each delivery to /a
    gets a 500 (per delivery: a global webhook also announces other documents that
    finish meanwhile, and each must see its own failure)."""

    def __init__(self, fail_first: Iterable[str] = ()) -> None:
        self.requests: list[Received] = []
        self._to_fail = set(fail_first)
        self._failed: set[tuple[str, str | None]] = set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    delivery = (self.path, self.headers.get("X-Docintel-Delivery"))
                    failing = self.path in receiver._to_fail and delivery not in receiver._failed
                    receiver._failed.add(delivery)
                    status = 500 if failing else 200
                    receiver.requests.append(
                        Received(self.path, dict(self.headers.items()), body, status)
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def received(self, path: str, delivery: str | None = None) -> list[Received]:
        """Requests to ``path`` (of one delivery id, if given), oldest first."""
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path == path
                and (delivery is None or r.headers.get("X-Docintel-Delivery") == delivery)
            ]

    def wait_for(self, path: str, count: int, timeout: float) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received(path)
            if len(got) >= count:
                return got
            time.sleep(0.1)
        raise AssertionError(f"{path}: {len(self.received(path))} of {count} requests in time")

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
