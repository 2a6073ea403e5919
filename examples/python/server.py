"""A corral worker with Python's standard library that drains by the rule in
corral's README: on SIGTERM it stops accepting, finishes the request in
flight, and exits. http.server answers HTTP/1.0, one request per
connection, so it has no idle keep-alive connection to take care of.

    corral run --listen 127.0.0.1:8080 -- python3 examples/python/server.py
"""
import os
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

sock = socket.socket(fileno=3)  # the first LISTEN_FDS socket


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = f"hello from worker {os.environ.get('CORRAL_WORKER_INDEX')} (pid {os.getpid()})\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


server = HTTPServer(sock.getsockname(), Handler, bind_and_activate=False)
server.socket = sock


def stop(signum, frame):
    # serve_forever returns once the request in flight is answered; the
    # other workers take the connections still queued on the socket.
    signal.signal(signum, signal.SIG_DFL)  # a second signal kills at once
    threading.Thread(target=server.shutdown).start()


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
n.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
server.serve_forever()
server.server_close()  # stop accepting: close this worker's copy of the socket
