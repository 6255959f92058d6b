#!/usr/bin/env python3
"""A member hospital's HIS/paging endpoint for critical-result webhooks: HTTPS on 127.0.0.1:PORT,
client certificate required (the centre CA), each POST appended to OUT as one JSON line with the
receive time (ms) and the client's certificate CN."""
import http.server
import json
import ssl
import sys
import time

port, out, cert, key, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        received_ms = time.time_ns() // 1_000_000
        subject = dict(x[0] for x in self.connection.getpeercert().get("subject", ()))
        with open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps({"received_ms": received_ms, "client_cn": subject.get("commonName", ""),
                                "path": self.path, "body": json.loads(body)}) + "\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", port), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
context.load_verify_locations(ca)
context.verify_mode = ssl.CERT_REQUIRED
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
