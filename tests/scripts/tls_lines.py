"""Sends line protocol from stdin over TLS with Python's ssl module.

usage: tls_lines.py HOST PORT CA_FILE [CERT_FILE KEY_FILE]

Verifies the server against CA_FILE (hostname = HOST); with CERT_FILE and
KEY_FILE presents a client certificate (mutual TLS). Sends everything, shuts
the write side down, then waits for the server to close. Prints "sent" and
the TLS version, or "error: ..." (exit 1).
"""
import socket
import ssl
import sys

host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
if len(sys.argv) > 5:
    ctx.load_cert_chain(sys.argv[4], sys.argv[5])
data = sys.stdin.buffer.read()
try:
    with socket.create_connection((host, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            version = tls.version()
            tls.sendall(data)
            # TLS 1.3 reports a refused client certificate only after the
            # handshake: read until the server closes or refuses.
            try:
                tls.settimeout(1)
                tls.recv(1)
            except socket.timeout:
                pass
            try:
                tls.unwrap()  # close_notify: the server reads to a clean end
            except (ssl.SSLError, OSError):
                pass
except (ssl.SSLError, OSError) as e:
    print(f"error: {e}")
    sys.exit(1)
print(f"sent {version}")
