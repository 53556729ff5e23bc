#!/usr/bin/python3
"""An RTSPS camera as X1, P2S and H2 printers serve one: H.264 at
rtsps://bblp:<access code>@<address>:<port>/streaming/live/1 over TLS with the printer's
certificate, Basic authentication as user `bblp`. GStreamer's RTSP server from Debian's packages
(gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-ugly for x264enc, glib-networking for TLS),
driven by Debian's python3-gi.

Prints `listening` once it accepts connections, then `clients N` whenever the number of
connected clients changes, so a test can count the camera's connections.

Usage: rtsps_server.py ADDRESS PORT CERT_PEM KEY_PEM ACCESS_CODE
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gio, GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def main():
    address, port, cert, key, code = sys.argv[1:6]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(address)
    server.set_service(port)

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        "( videotestsrc is-live=true pattern=ball "
        "! video/x-raw,width=320,height=180,framerate=15/1 "
        "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    factory.add_role_from_structure(
        Gst.Structure.new_from_string(
            "bblp, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
        )
    )
    # Only TCP-interleaved transport over the TLS connection, as through a relay.
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
    server.get_mount_points().add_factory("/streaming/live/1", factory)

    auth = GstRtspServer.RTSPAuth()
    auth.set_tls_certificate(Gio.TlsCertificate.new_from_files(cert, key))
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "bblp")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic("bblp", code), token)
    server.set_auth(auth)

    clients = [0]

    def closed(_client):
        clients[0] -= 1
        print(f"clients {clients[0]}", flush=True)

    def connected(_server, client):
        clients[0] += 1
        print(f"clients {clients[0]}", flush=True)
        client.connect("closed", closed)

    server.connect("client-connected", connected)
    if server.attach(None) == 0:
        print("could not listen", flush=True)
        sys.exit(1)
    print("listening", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
