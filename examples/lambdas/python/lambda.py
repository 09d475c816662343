#!/usr/bin/env python3
"""A needs-sync lambda in Python, standard library only: retrain when the newest model is stale.

Model records are JSON files in a folder (for example the `models/` folder of a git-sync or
`modelsync mirror` checkout), each {"id": ..., "created": "<RFC 3339>", ...}.

With --token-file, callers must send `Authorization: Bearer <token>`, as the controller does
with the `token` key of the Secret a ModelSync names in spec.lambdaSecretRef.
"""

import argparse
import datetime
import hmac
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


def authorized(header, token):
    """Whether an Authorization header carries the token (always, when no token is set)."""
    if token is None:
        return True
    prefix = "Bearer "
    if header is None or not header.startswith(prefix):
        return False
    # Constant time, so response timing does not tell how much of a guess was right.
    return hmac.compare_digest(header[len(prefix):].encode(), token.encode())


def read_token(path):
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        token = f.read().strip()
    if not token:
        sys.exit(f"--token-file {path} is empty")
    return token


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", required=True, help="folder of JSON model records")
    parser.add_argument("--max-age-hours", type=float, default=24.0)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--token-file", help="require Authorization: Bearer <this file's content>")
    args = parser.parse_args()
    max_age = datetime.timedelta(hours=args.max_age_hours)
    token = read_token(args.token_file)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if not authorized(self.headers.get("Authorization"), token):
                error = {"error": "missing or wrong bearer token: send Authorization: Bearer <token>"}
                return self.answer(401, error, {"WWW-Authenticate": "Bearer"})
            status, answer = decide(args.models, max_age, datetime.datetime.now(datetime.timezone.utc))
            self.answer(status, answer)

        def answer(self, status, answer, headers=None):
            body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
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
