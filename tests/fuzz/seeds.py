#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora from the real captures and fixtures.

    seeds.py OUT_DIR      (scripts/fuzz runs it; OUT_DIR/<target>/ gets the seeds)

Seeds are derived every run from tests/fixtures, so they follow the fixtures; what the fuzzer
finds beyond them grows in the corpus directory next to them.
"""
import hashlib
import json
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
OUT = Path(sys.argv[1])


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def payloads(doc):
    """Every report payload of a capture, as a printer sends it."""
    found = []
    for key, value in doc.items():
        if key == "_meta" or not isinstance(value, dict):
            continue
        if "message" in value or key == "message":
            value = value.get("message", value)
        if "print" in value or "info" in value:
            found.append(value)
        elif "command" in value or "gcode_state" in value:
            found.append({"print": value})
    return [json.dumps(p, separators=(",", ":")).encode() for p in found]


def varint(n):
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish(topic, payload):
    body = struct.pack(">H", len(topic)) + topic.encode() + payload
    return bytes([0x30]) + varint(len(body)) + body


reports = []
for path in sorted((FIXTURES / "printers").glob("*.json")):
    for p in payloads(json.loads(path.read_text())):
        reports.append(p)
        put("report", p)
        put("mqtt_packets", b"\x20\x02\x00\x00" + publish("device/01S00A000000000/report", p))
put("report", b"\x1e".join(reports))
put("mqtt_packets", b"".join(publish("device/x/report", p) for p in reports[:4]))
put("mqtt_packets", b"\x90\x03\x00\x01\x00")  # SUBACK

for path in sorted((FIXTURES / "3mf").glob("*.3mf")):
    put("threemf", path.read_bytes())

put("ftps_replies", "220 Service ready\r\n331 Password required\r\n230 Logged in\r\n"
    "200 PBSZ=0\r\n200 Protection level set to P\r\n200 Switching to Binary mode.\r\n"
    "550 No such file\r\n213 48350\r\n")
put("ftps_replies", "220-Welcome\r\n220 ready\r\n530 Login incorrect.\r\n")
put("ftps_replies", "220 ready\r\n331 pw\r\n230 ok\r\n200 ok\r\n200 ok\r\n200 ok\r\n"
    "550 a\r\n550 b\r\n550 c\r\n550 d\r\n")

listing = "\n".join([
    "-rw-rw-rw-   1 root  root   48350 Dec  1 10:00 cube.gcode.3mf",
    "-rw-rw-rw-   1 root  root    1200 Jan  3  2026 Cube.3mf",
    "drwxrwxrwx   1 root  root       0 Dec  1 09:00 cache",
    "-rw-rw-rw-   1 root  root     900 Dec  1 11:00 other.gcode",
])
put("ftps_listing", "cube\0/cache/cube.gcode.3mf\0" + listing)
put("ftps_listing", "My Cube\0ftp:///models/my cube.3mf\0" + listing.replace("cube", "my_cube"))

jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
framed = b"".join(
    struct.pack("<IIII", len(jpeg), 0, i, 0) + jpeg for i in range(3))
put("camera_frames", bytes([7]) + framed)
put("camera_frames", bytes([1]) + b"junk" + jpeg + jpeg[:9] + b"\xff\x00" + jpeg[9:])
put("camera_frames", struct.pack("<IIII", 2 * 1024**3, 0, 0, 0))

put("config", "[nats]\nurl = \"nats://127.0.0.1:4222\"\nrequest_timeout_ms = 1500\n"
    "[database]\nurl = \"postgres://postgres@127.0.0.1/printyard\"\nmax_connections = 8\n"
    "[http]\nlisten = \"0.0.0.0:8080\"\nmax_body_bytes = 1048576\n"
    "[telemetry]\nlog_level = \"info\"\n\0NATS__URL=nats://10.0.0.5:4222\nHTTP__LISTEN=127.0.0.1:0\n")
put("config", "[gateway]\nsite = \"default\"\n[archive]\nstorage = \"filesystem\"\n\0"
    "RATE_LIMITS__ENABLED=false\n")

bodies = {
    0: {"notes": "ok", "tags": ["a"], "status": "completed"},
    1: {"electricity_cost_per_kwh": 0.3, "currency": "EUR"},
    2: {"name": "ci", "permissions": ["read"]},
    3: {"name": "P1S #1", "host": "10.0.0.5", "access_code": "12345678",
        "serial": "01P00A000000001", "model": "P1S", "site": "default"},
    5: {"username": "admin", "password": "correct horse battery"},
    6: {"archive_id": 1, "printer_id": 2, "plate": 1, "copies": 2},
    10: {"material": "PLA", "color": "#FF0000", "weight_g": 1000},
    12: {"url": "https://example.com/hook", "events": ["print_complete"]},
    14: {"ids": [3, 1, 2]},
}
for which, body in bodies.items():
    put("api_requests", bytes([which]) + json.dumps(body).encode())
for which in range(20):
    put("api_requests", bytes([which]) + b'{"name": 1, "x": [1, {"y": null}]}')
queries = {
    20: "printer_id=1&status=completed&limit=20&offset=0&start_date=2026-01-01",
    25: "events=print_started,printer_status&site=default",
    27: "site=main&state=printing",
    31: "start_date=2026-01-01&end_date=2026-12-31T23:59:59Z&group_by=printer",
    34: "start_date=2026-11-01&end_date=2026-11-30&model=P1S",
}
for which, q in queries.items():
    put("api_requests", bytes([which]) + q.encode())
put("api_requests", bytes([35]) + b"2026-02-29\x002026-12-31T23:59:59+14:00")
