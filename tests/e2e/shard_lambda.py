#!/usr/bin/env python3
"""A needs-sync lambda that records, for each ModelSync it is asked about, which controller
process asked.

    python3 shard_lambda.py PORT CONTROLLERS_FILE

CONTROLLERS_FILE holds lines "<name> <pid>", one per controller process; it is read again
whenever a connection comes from a process not known yet. The asking process is found the
way `ss -p` finds it: the connection's peer port leads, through /proc/net/tcp, to the socket's
inode, and the controller whose /proc/<pid>/fd holds that socket is the one asking. Nothing
the controllers send is trusted for it: every ModelSync chooses the same URL, and the
controllers send the same headers.

GET /<anything> with X-ModelSync-Namespace and X-ModelSync-Name answers what
PUT /_answer/<namespace>/<name> set (a JSON object), else {"needsSync": false}.
GET /_calls returns {"<namespace>/<name>": {"<controller>": {"count": n, "first": t, "last": t}}}
with t in Unix seconds; a connection from no listed process counts as "unknown".
Standard library only.
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
ANSWERS = {}
CALLS = {}
PORT = int(sys.argv[1])
CONTROLLERS_FILE = sys.argv[2]


def controllers():
    try:
        with open(CONTROLLERS_FILE) as f:
            return [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        return []


def hex_endpoint(field):
    """'0100007F:1F90' -> ('127.0.0.1', 8080), as /proc/net/tcp writes IPv4 endpoints."""
    ip, port = field.split(":")
    octets = [str(int(ip[i:i + 2], 16)) for i in range(6, -1, -2)]
    return ".".join(octets), int(port, 16)


def socket_inode(peer):
    """The inode of the client's end of the connection from `peer` to this server."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, inode = hex_endpoint(fields[1]), hex_endpoint(fields[2]), fields[9]
            if local == peer and remote[1] == PORT:
                return inode
    return None


def owner(peer):
    inode = socket_inode(peer)
    if inode is None:
        return "unknown"
    target = f"socket:[{inode}]"
    for name, pid in controllers():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return name
            except OSError:
                pass
    return "unknown"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    caller = None  # one handler per connection: resolved once, on its first request

    def log_message(self, *args):
        pass

    def send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        if not self.path.startswith("/_answer/"):
            return self.send(404, {"error": "PUT only /_answer/<namespace>/<name>"})
        length = int(self.headers.get("Content-Length", 0))
        answer = json.loads(self.rfile.read(length) or b"{}")
        with LOCK:
            ANSWERS[self.path[len("/_answer/"):]] = answer
        self.send(200, {})

    def do_GET(self):
        if self.path == "/_calls":
            with LOCK:
                return self.send(200, CALLS)
        if self.caller in (None, "unknown"):
            self.caller = owner(self.client_address[:2])
        key = f"{self.headers.get('X-ModelSync-Namespace')}/{self.headers.get('X-ModelSync-Name')}"
        now = time.time()
        with LOCK:
            entry = CALLS.setdefault(key, {}).setdefault(
                self.caller, {"count": 0, "first": now, "last": now})
            entry["count"] += 1
            entry["last"] = now
            answer = ANSWERS.get(key, {"needsSync": False})
        self.send(200, answer)


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
