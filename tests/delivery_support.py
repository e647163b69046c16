"""A real webhook receiver on loopback for the delivery tests and the benchmark: it verifies every
signature (Standard Webhooks), keeps each alert once by its id, and misbehaves by the recipient's
address: ``flaky…`` (every other request 503), ``slow…`` (the first request of an alert answers
after the sender's timeout), ``fivehundred…`` (500, then 200), ``limited…`` (429 with Retry-After: 1,
then 200), ``gone…`` (410)."""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from meters import webhooks
from meters.errors import MetersError


class Receiver:
    def __init__(self, secret: str, *, slow_s: float = 1.5, delay_s: float = 0.0):
        self.secret, self.slow_s, self.delay_s = secret, slow_s, delay_s
        self.got: dict[str, dict] = {}          # alert id → the delivered alert (deduplicated)
        self.requests = Counter()               # alert id → requests seen
        self.bad_signatures = 0
        self.flaky = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                if len(body) < length:   # the sender died mid-request (kill -9): nothing to verify or answer
                    self.close_connection = True
                    return
                status, extra = receiver.handle(dict(self.headers), body)
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                text = b"recipient unsubscribed" if status == 410 else b""
                self.send_header("content-length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None   # a sender that timed out and left
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, headers: dict, body: bytes) -> tuple[int, dict]:
        try:
            msg_id = webhooks.verify(self.secret, headers, body, time.time())
        except MetersError:
            with self.lock:
                self.bad_signatures += 1
            return 401, {}
        data = json.loads(body)["data"]
        assert data["id"] == msg_id
        address = data["address"]
        with self.lock:
            self.requests[msg_id] += 1
            n = self.requests[msg_id]
            if address.startswith("flaky"):
                self.flaky += 1
                if self.flaky % 2:
                    return 503, {}
        if self.delay_s:
            time.sleep(self.delay_s)
        if address.startswith("gone"):
            return 410, {}
        if address.startswith("slow") and n == 1:
            time.sleep(self.slow_s)
        if address.startswith("fivehundred") and n == 1:
            return 500, {}
        if address.startswith("limited") and n == 1:
            return 429, {"Retry-After": "1"}
        with self.lock:
            self.got.setdefault(msg_id, data)
        return 200, {}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
