"""An OTLP/HTTP trace receiver (port 4318) that keeps which services sent spans, and answers
Jaeger's `GET /api/services` (port 16686) with them. Only what a check needs: the payload is
read for each resource's `service.name`, not decoded whole."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

services = {}
lock = threading.Lock()


def varint(data, i):
    value = shift = 0
    while i < len(data):
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i
    raise ValueError("truncated varint")


def service_names(payload):
    """The `service.name` values of a protobuf ExportTraceServiceRequest: after the key comes
    the KeyValue's value (field 2) holding an AnyValue whose string_value is field 1."""
    names, key, start = set(), b"service.name", 0
    while (at := payload.find(key, start)) >= 0:
        start = at + len(key)
        try:
            i = start
            if payload[i] != 0x12:
                continue
            _, i = varint(payload, i + 1)
            if payload[i] != 0x0A:
                continue
            length, i = varint(payload, i + 1)
            names.add(payload[i : i + length].decode())
        except (IndexError, ValueError, UnicodeDecodeError):
            continue
    return names


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        with lock:
            for name in service_names(body):
                services[name] = services.get(name, 0) + 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Query(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.split("?")[0] != "/api/services":
            self.send_error(404)
            return
        with lock:
            body = json.dumps({"data": sorted(services), "batches": services}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    query = ThreadingHTTPServer(("0.0.0.0", 16686), Query)
    threading.Thread(target=query.serve_forever, daemon=True).start()
    ThreadingHTTPServer(("0.0.0.0", 4318), Receiver).serve_forever()
