#!/usr/bin/env python3
"""A needs-sync lambda whose answers a test scripts at run time, and which counts its calls.

    python3 scripted_lambda.py PORT [ADDRESS]

ADDRESS defaults to 127.0.0.1; the real-node tests give the node's bridge address, where the
controller's pod reaches it.

PUT /_script/<route> with {"status": 200, "json": {...}} (or "body": "raw text",
"repeat": N to send the body N times, "delay": seconds before answering, "headers": {...} to
send besides Content-Type) sets what GET /<route> answers. GET /_calls returns {"<route>": {"count": n, "last_headers": {...}}}, header names lowercased.
Standard library only: lambdas may be written in any language, and this one is Python.
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
SCRIPTS = {}
CALLS = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output quiet
        pass

    def send(self, status, body, content_type="application/json", headers=None):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_PUT(self):
        if not self.path.startswith("/_script/"):
            return self.send(404, '{"error": "PUT only /_script/<route>"}')
        route = "/" + self.path[len("/_script/"):]
        length = int(self.headers.get("Content-Length", 0))
        script = json.loads(self.rfile.read(length) or b"{}")
        with LOCK:
            SCRIPTS[route] = script
        self.send(200, "{}")

    def do_GET(self):
        route = self.path.split("?")[0]
        if route == "/_calls":
            with LOCK:
                return self.send(200, json.dumps(CALLS))
        with LOCK:
            script = SCRIPTS.get(route)
            entry = CALLS.setdefault(route, {"count": 0, "last_headers": {}})
            entry["count"] += 1
            entry["last_headers"] = {k.lower(): v for k, v in self.headers.items()}
        if script is None:
            return self.send(404, '{"error": "no script for this route"}')
        time.sleep(script.get("delay", 0))
        if "json" in script:
            body = json.dumps(script["json"])
        else:
            body = script.get("body", "") * script.get("repeat", 1)
        self.send(script.get("status", 200), body, headers=script.get("headers"))


def main():
    address = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    server = ThreadingHTTPServer((address, int(sys.argv[1])), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
