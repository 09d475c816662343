"""A notification receiver for modelsync's tests and demo.

--format cloudevents parses each request with the official CloudEvents SDK for Python
(`cloudevents.core.bindings.http.from_binary_event`), which refuses anything that is not a
valid CloudEvent in binary HTTP mode;
--format slack accepts only what a Slack incoming webhook accepts at the least: a JSON object
with a non-empty string `text`. Accepted notifications are kept in order and served as a JSON
list at GET /received; refused ones get 400 and are counted at GET /refused.
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

received = []
refused = []
lock = threading.Lock()


def cloudevent(headers, body):
    from cloudevents.core.bindings.http import HTTPMessage, from_binary_event

    # Binary mode only: attributes in ce- headers, the data as the body.
    event = from_binary_event(HTTPMessage(headers, body))
    time = event.get_time()
    return {
        "specversion": event.get_specversion(),
        "type": event.get_type(),
        "source": event.get_source(),
        "id": event.get_id(),
        "time": time.isoformat() if time else None,
        "subject": event.get_subject(),
        "datacontenttype": event.get_datacontenttype(),
        "data": event.get_data(),
    }


def slack(headers, body):
    message = json.loads(body)
    if not isinstance(message, dict) or not isinstance(message.get("text"), str) or not message["text"]:
        raise ValueError("a Slack message needs a non-empty string 'text'")
    blocks = message.get("blocks", [])
    if not isinstance(blocks, list) or any(not isinstance(b, dict) or "type" not in b for b in blocks):
        raise ValueError("'blocks' must be a list of objects with a 'type'")
    return {"text": message["text"], "blocks": blocks}


def handler(parse):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                note = parse(headers, body)
            except Exception as e:  # what the SDK or the check refused, told to the sender
                with lock:
                    refused.append(str(e))
                self.answer(400, {"error": str(e)})
                return
            note["eventIdHeader"] = headers.get("x-modelsync-event-id")
            note["authorization"] = headers.get("authorization")
            with lock:
                received.append(note)
            print(json.dumps(note), flush=True)
            self.answer(200, {"ok": True})

        def do_GET(self):
            with lock:
                if self.path == "/received":
                    self.answer(200, received)
                elif self.path == "/refused":
                    self.answer(200, refused)
                else:
                    self.answer(404, {"error": "GET /received or /refused"})

        def answer(self, status, value):
            data = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--format", choices=["cloudevents", "slack"], required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    args = p.parse_args()
    parse = cloudevent if args.format == "cloudevents" else slack
    server = ThreadingHTTPServer((args.host, args.port), handler(parse))
    print(f"{args.format} receiver on {args.host}:{args.port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
