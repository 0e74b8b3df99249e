"""A real local webhook receiver for the ticket tests."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    """An HTTP server recording the notices it accepts.

    It answers ``statuses`` in turn (then 200), or with ``fail_every`` 500 to
    every n-th request; each request takes ``delay`` seconds. ``got`` holds
    (headers, body) of what it accepted, ``keys`` counts their idempotency keys.
    """

    def __init__(self, delay: float = 0.0, fail_every: int = 0) -> None:
        self.got: list[tuple[dict[str, str], dict]] = []
        self.keys: Counter[str] = Counter()
        self.statuses: list[int] = []
        self.requests = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(delay)
                with receiver.lock:
                    receiver.requests += 1
                    if receiver.statuses:
                        status = receiver.statuses.pop(0)
                    elif fail_every and receiver.requests % fail_every == 1:
                        status = 500
                    else:
                        status = 200
                    if status == 200:
                        receiver.got.append((dict(self.headers), json.loads(body)))
                        receiver.keys[self.headers["Idempotency-Key"]] += 1
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def total(self) -> int:
        """Notices accepted so far."""
        with self.lock:
            return sum(self.keys.values())

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
