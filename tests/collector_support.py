"""A scripted stand-in for the collector's HTTP side (http.server), for client tests without a broker."""

from __future__ import annotations

import gzip
import json
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DROP = "drop"  # close the connection after reading the request, without an answer


@dataclass
class Received:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    events: list[dict[str, Any]]
    answered: int | None


class FakeCollector:
    """Answers POSTs from a script (status, headers, body) and records every request it read."""

    def __init__(self) -> None:
        self.script: deque[Any] = deque()
        self.received: list[Received] = []
        self.cond = threading.Condition()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                events = json.loads(raw)
                with fake.cond:
                    action = fake.script.popleft() if fake.script else (200, {}, None)
                    status = None if action == DROP else action[0]
                    url = urlsplit(self.path)
                    fake.received.append(
                        Received(url.path, parse_qs(url.query), dict(self.headers), events, status)
                    )
                    fake.cond.notify_all()
                if action == DROP:
                    self.close_connection = True
                    return
                code, headers, body = action
                if body is None:
                    body = {"accepted": len(events), "rejected": [], "request_id": "r"}
                payload = json.dumps(body).encode()
                self.send_response(code)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def wait_for_requests(self, count: int, timeout_s: float = 10.0) -> list[Received]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.received) >= count, timeout_s), self.received
            return list(self.received)

    def event_ids_answered_ok(self) -> list[str]:
        return [e["event_id"] for r in self.received if r.answered in (200, 202) for e in r.events]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
