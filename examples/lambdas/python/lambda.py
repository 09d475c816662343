#!/usr/bin/env python3
"""A needs-sync lambda in Python, standard library only: retrain when the newest model is stale.

Model records are JSON files in a folder (for example the `models/` folder of a git-sync or
`modelsync mirror` checkout), each {"id": ..., "created": "<RFC 3339>", ...}.
"""

import argparse
import datetime
import http.server
import json
import os
import sys


def newest_model(models_dir):
    """The record with the greatest `created`, or None when there is none yet."""
    newest = None
    if not os.path.isdir(models_dir):
        return None
    for name in sorted(os.listdir(models_dir)):
        if not name.endswith(".json"):
            continue
        path = os.path.join(models_dir, name)
        with open(path, encoding="utf-8") as f:
            try:
                record = json.load(f)
                created = datetime.datetime.fromisoformat(record["created"].replace("Z", "+00:00"))
                model_id = str(record["id"])
            except (ValueError, KeyError, AttributeError) as e:
                raise ValueError(f"{name}: not a model record with id and created (RFC 3339): {e}") from e
        if newest is None or (created, model_id) > newest[:2]:
            newest = (created, model_id)
    return newest


def decide(models_dir, max_age, now):
    """Returns (HTTP status, answer object)."""
    try:
        newest = newest_model(models_dir)
    except (OSError, ValueError) as e:
        return 500, {"error": f"cannot read models: {e}"}
    if newest is None:
        return 200, {"needsSync": True, "reason": "no model exists yet", "revision": "none"}
    created, model_id = newest
    age = now - created
    stale = age > max_age
    verdict = "more than" if stale else "within"
    return 200, {
        "needsSync": stale,
        "reason": f"newest model {model_id} is {int(age.total_seconds() // 3600)}h old, {verdict} maxAge {int(max_age.total_seconds() // 3600)}h",
        "revision": model_id,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", required=True, help="folder of JSON model records")
    parser.add_argument("--max-age-hours", type=float, default=24.0)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    args = parser.parse_args()
    max_age = datetime.timedelta(hours=args.max_age_hours)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            status, answer = decide(args.models, max_age, datetime.datetime.now(datetime.timezone.utc))
            body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *log_args):
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % log_args))

    server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
