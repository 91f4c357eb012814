"""A loopback HTTP server for download tests, with the failure modes real servers have.

    server = Server({"/f.bin": blob}); server.url + "/f.bin"; ...; server.close()

Knobs (attributes, change them between requests): ``honour_range`` (False: a Range request gets
the whole file with 200), ``send_length`` (False: no Content-Length, the body ends when the
connection closes, as HTTP/1.0 allows), ``drop_after`` (the next GET sends this many body bytes
and closes the connection; ``drops`` says how many GETs do so), ``linked`` (HEAD answers with the
Hub's X-Linked-Size / X-Linked-Etag = sha256 of the content), ``head_allowed`` (False: 405),
``chunked`` (Transfer-Encoding: chunked), ``honour_if_range``. Every file has an ETag derived from
its content, so replacing ``files[path]`` is a new version. ``requests`` records
(method, path, Range header).
"""
from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def etag_of(body: bytes) -> str:
    return '"' + hashlib.md5(body).hexdigest() + '"'


class Server:
    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []
        self.honour_range, self.send_length, self.linked, self.head_allowed = True, True, False, True
        self.chunked, self.honour_if_range, self.drop_after, self.drops = False, True, None, 1
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _not_found(self):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_HEAD(self):
                body = outer.files.get(self.path)
                outer.requests.append(("HEAD", self.path, None))
                if not outer.head_allowed:
                    self.send_response(405)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if body is None:
                    return self._not_found()
                self.send_response(200)
                if outer.send_length:
                    self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag_of(body))
                if outer.linked:
                    self.send_header("X-Linked-Size", str(len(body)))
                    self.send_header("X-Linked-Etag", '"' + hashlib.sha256(body).hexdigest() + '"')
                self.end_headers()

            def do_GET(self):
                body = outer.files.get(self.path)
                rng = self.headers.get("Range")
                outer.requests.append(("GET", self.path, rng))
                if body is None:
                    return self._not_found()
                start = int(rng.split("=")[1].split("-")[0]) if rng and outer.honour_range else 0
                if_range = self.headers.get("If-Range")
                if start and outer.honour_if_range and if_range and if_range != etag_of(body):
                    start = 0  # another version: the whole new file
                if start >= len(body) and start:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                payload = body[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("ETag", etag_of(body))
                if outer.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                elif outer.send_length:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                drop = outer.drop_after is not None and outer.drops > 0
                if drop:
                    outer.drops -= 1
                    payload = payload[:outer.drop_after]
                if outer.chunked:
                    for i in range(0, len(payload), 1000):
                        piece = payload[i:i + 1000]
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    if not drop:
                        self.wfile.write(b"0\r\n\r\n")
                else:
                    self.wfile.write(payload)
                self.close_connection = True  # HTTP/1.0: the close ends a body without a length

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def gets(self) -> list[tuple[str, str, str | None]]:
        return [r for r in self.requests if r[0] == "GET"]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
