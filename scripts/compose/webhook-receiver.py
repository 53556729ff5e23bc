"""A webhook receiver for scripts/compose-check: answers 204 to every POST on ADDRESS:PORT and
appends a line per request to LOG: the event's type and whether its signature verifies with the
Standard Webhooks library (PyPI), given the secret in LOG's folder (webhook-secret) once it is
there."""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks.webhooks import Webhook

address, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
secret_file = os.path.join(os.path.dirname(log), "webhook-secret")


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            Webhook(open(secret_file).read().strip()).verify(body, headers)
            verified = True
        except Exception:
            verified = False
        try:
            payload = json.loads(body)
            event = payload.get("event") or payload.get("type")
        except ValueError:
            event = None
        with open(log, "a") as out:
            out.write(json.dumps({"event": event, "verified": verified}) + "\n")
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer((address, port), Hook).serve_forever()
