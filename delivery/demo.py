"""What ``meters demo`` shows of delivery: a webhook receiver on loopback that verifies every
signature and keeps the messages, and a dispatcher run until the queue is idle."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from meters import outbox, webhooks
from meters.errors import MetersError
from meters.lake import Lake

from . import dispatcher


class LocalReceiver:
    """A receiver on 127.0.0.1 (a free port): 200 for a correctly signed alert, 401 otherwise."""

    def __init__(self):
        self.secret = webhooks.new_secret()
        self.messages: dict[str, dict] = {}
        self.rejected = 0
        me = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                try:
                    msg_id = webhooks.verify(me.secret, dict(self.headers), body, time.time())
                    me.messages.setdefault(msg_id, json.loads(body)["data"])
                    self.send_response(200)
                except MetersError:
                    me.rejected += 1
                    self.send_response(401)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def deliver(lake: Lake, idle_s: float = 1.0) -> dict:
    """Run a dispatcher on ``lake``'s outbox until nothing was sent for ``idle_s`` seconds."""
    engine = outbox.open_outbox(lake)
    try:
        return dispatcher.run(engine, dispatcher.Settings(until_idle_s=idle_s, poll_s=0.1))
    finally:
        engine.dispose()
