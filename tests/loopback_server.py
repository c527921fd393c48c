"""A tiny HTTP server on 127.0.0.1 for the download tests: it serves files from memory, honours `Range: bytes=N-`
(206 with Content-Range) unless told not to, and can drop the connection after a number of bytes of a response
to play an interrupted download, or hold a response after a number of bytes until the test releases it (so that a
cancel or a Ctrl-C lands mid-file, whatever the machine's load). It records every request's path and Range header."""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_after: int | None = None  # drop the next response after this many body bytes
        self.honour_range = True
        self.sent = 0  # body bytes sent, all responses together
        self.hold_after: int | None = None  # body bytes of a response sent before it waits for `released`
        self.held = threading.Event()  # set when a response has sent hold_after bytes and waits
        self.released = threading.Event()  # set by the test (and on exit): the held response goes on
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                match = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
                if match and server.honour_range:
                    start = int(match.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if server.cut_after is not None:
                    payload, server.cut_after = payload[:server.cut_after], None
                    server.sent += len(payload)  # counted first: the client may check before this thread goes on
                    self.wfile.write(payload)
                    self.close_connection = True
                    return
                hold = server.hold_after
                pieces = [payload] if hold is None else [payload[:hold], payload[hold:]]
                for number, piece in enumerate(pieces):
                    if number:  # the first piece is out: wait until the test lets the rest go
                        server.held.set()
                        server.released.wait(60)
                    server.sent += len(piece)  # counted first: the client may check before this thread goes on
                    try:
                        self.wfile.write(piece)
                        self.wfile.flush()
                    except OSError:  # the client went away (a cancelled download)
                        return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll: shutdown() waits for the next one (0.5 s by default, in every test that serves)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def serve(self, name: str, body: bytes) -> str:
        self.files[f"/{name}"] = body
        return self.url(name)

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()  # a response still held ends (its client is gone or done)
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
