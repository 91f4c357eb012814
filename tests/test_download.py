"""data.download against a loopback server that misbehaves as real ones do: no Content-Length,
a dropped connection, Range ignored or misaligned, a new version between two calls, a wrong sha256,
a complete part left by a kill. The final name must only ever hold the real file."""
from __future__ import annotations

import hashlib
import json
import os

import pytest

import data.download as dl
from data.download import DownloadError, download, remote_info
from loopback import Server

BLOB = bytes(range(256)) * 40  # 10,240 bytes
NEW = bytes(reversed(BLOB))  # another version, same size


@pytest.fixture
def server():
    s = Server({"/f.bin": BLOB})
    yield s
    s.close()


def _kill_before_rename(monkeypatch):
    """The next download stops after the part is complete and fsync'ed, before the rename."""
    def killed(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(dl, "_finish", killed)


def test_no_length_and_a_drop_half_way_is_resumed_not_renamed(server, tmp_path):
    server.send_length, server.drop_after = False, 4000  # HTTP/1.0 body ended by the close
    dest = tmp_path / "f.bin"
    assert download(server.url + "/f.bin", dest).read_bytes() == BLOB
    gets = server.gets()
    assert [g[2] for g in gets] == [None, "bytes=4000-"]  # the end was checked, and the rest fetched
    assert not (tmp_path / "f.bin.part").exists() and not (tmp_path / "f.bin.part.json").exists()


def test_no_length_complete_body_is_confirmed_by_a_416(server, tmp_path):
    server.send_length = False
    assert download(server.url + "/f.bin", tmp_path / "f.bin").read_bytes() == BLOB
    assert [g[2] for g in server.gets()] == [None, f"bytes={len(BLOB)}-"]  # 416 bytes */10240


def test_no_length_and_no_range_cannot_be_verified(server, tmp_path):
    server.send_length, server.honour_range, server.drop_after = False, False, 4000
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match="announces no size and ignores Range"):
        download(server.url + "/f.bin", dest)
    assert not dest.exists() and (tmp_path / "f.bin.part").stat().st_size == 4000
    # the same server with a known sha256 (the Hub's X-Linked-Etag): a whole body is verifiable
    server.linked = True
    assert download(server.url + "/f.bin", dest).read_bytes() == BLOB


def test_chunked_body_without_length(server, tmp_path):
    server.send_length, server.chunked = False, True
    assert download(server.url + "/f.bin", tmp_path / "a.bin").read_bytes() == BLOB
    assert len(server.gets()) == 1  # the terminating chunk proves the end
    server.drop_after = 3000  # no terminating chunk: an error, the part kept, then resumed
    with pytest.raises(DownloadError, match="interrupted"):
        download(server.url + "/f.bin", tmp_path / "b.bin")
    assert not (tmp_path / "b.bin").exists() and (tmp_path / "b.bin.part").stat().st_size == 3000
    assert download(server.url + "/f.bin", tmp_path / "b.bin").read_bytes() == BLOB
    assert server.gets()[-1][2] == "bytes=3000-"


def test_drop_with_length_keeps_the_part_and_resumes(server, tmp_path):
    server.drop_after = 1000
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match=f"got 1000 bytes, expected {len(BLOB)}.*kept for resuming"):
        download(server.url + "/f.bin", dest)
    assert not dest.exists()
    assert download(server.url + "/f.bin", dest).read_bytes() == BLOB
    assert server.gets()[-1][2] == "bytes=1000-"


@pytest.mark.parametrize("head", [True, False])
def test_complete_part_left_by_a_kill_is_finished(server, tmp_path, monkeypatch, head):
    """Killed between the last byte and the rename; the second call must not meet 416 forever."""
    server.head_allowed = server.send_length = head  # without HEAD nor length the record has no size
    dest = tmp_path / "f.bin"
    with monkeypatch.context() as m:
        _kill_before_rename(m)
        with pytest.raises(KeyboardInterrupt):
            download(server.url + "/f.bin", dest)
    assert (tmp_path / "f.bin.part").read_bytes() == BLOB and not dest.exists()
    server.requests.clear()
    assert download(server.url + "/f.bin", dest).read_bytes() == BLOB
    # with a size known from HEAD nothing is fetched; without, one Range request answers 416
    assert [g[2] for g in server.gets()] == ([] if head else [f"bytes={len(BLOB)}-"])


def test_416_with_another_size_restarts(server, tmp_path, monkeypatch):
    server.head_allowed, server.send_length = False, False
    server.files["/f.bin"] = BLOB + b"old tail"
    with monkeypatch.context() as m:
        _kill_before_rename(m)
        with pytest.raises(KeyboardInterrupt):
            download(server.url + "/f.bin", tmp_path / "f.bin")
    server.files["/f.bin"] = BLOB[:5000]  # the new version is shorter than the part: 416 bytes */5000
    assert download(server.url + "/f.bin", tmp_path / "f.bin").read_bytes() == BLOB[:5000]


def test_misaligned_content_range_is_not_spliced(server, tmp_path, monkeypatch):
    """A 206 that starts elsewhere than the part's end (here: a block boundary) restarts the file."""
    server.drop_after = 1000
    with pytest.raises(DownloadError):
        download(server.url + "/f.bin", tmp_path / "f.bin")
    real_get = server.httpd.RequestHandlerClass.do_GET

    def aligned_get(handler):
        if handler.headers.get("Range"):
            handler.headers.replace_header("Range", "bytes=512-")  # the server rounds down
        real_get(handler)
    monkeypatch.setattr(server.httpd.RequestHandlerClass, "do_GET", aligned_get)
    assert download(server.url + "/f.bin", tmp_path / "f.bin").read_bytes() == BLOB


@pytest.mark.parametrize("head, if_range", [(True, True), (False, True), (False, False)])
def test_stale_part_of_another_version_is_not_spliced(server, tmp_path, head, if_range):
    """The part holds the old version's first 4000 bytes; the server now has a new version of the
    same size. Detected from the HEAD's ETag, the server's If-Range answer, or the 206's ETag."""
    server.drop_after = 4000
    with pytest.raises(DownloadError):
        download(server.url + "/f.bin", tmp_path / "f.bin")
    assert json.loads((tmp_path / "f.bin.part.json").read_text())["size"] == len(BLOB)
    server.files["/f.bin"] = NEW
    server.head_allowed, server.honour_if_range = head, if_range
    assert download(server.url + "/f.bin", tmp_path / "f.bin").read_bytes() == NEW


def test_part_without_a_record_is_not_trusted(server, tmp_path):
    (tmp_path / "f.bin.part").write_bytes(NEW[:4000])  # from an older layout or another tool
    assert download(server.url + "/f.bin", tmp_path / "f.bin").read_bytes() == BLOB
    assert server.gets()[-1][2] is None


def test_sha256_from_the_hub_headers_is_checked(server, tmp_path, monkeypatch):
    server.linked = True
    info = remote_info(server.url + "/f.bin")
    assert info.size == len(BLOB) and info.sha256 == hashlib.sha256(BLOB).hexdigest()
    real_get = server.httpd.RequestHandlerClass.do_GET

    def corrupt_get(handler):  # the CDN serves other bytes of the same length
        server.files["/f.bin"] = NEW
        try:
            real_get(handler)
        finally:
            server.files["/f.bin"] = BLOB
    monkeypatch.setattr(server.httpd.RequestHandlerClass, "do_GET", corrupt_get)
    with pytest.raises(DownloadError, match="sha256 .* differs from the server's"):
        download(server.url + "/f.bin", tmp_path / "f.bin")
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()
    with pytest.raises(DownloadError, match="sha256"):  # a sha256 the caller knows is checked too
        download(server.url + "/f.bin", tmp_path / "g.bin", sha256="0" * 64)


def test_hub_redirect_headers_give_size_and_sha256(server, tmp_path, monkeypatch):
    """The Hub answers HEAD on an LFS file with a redirect to its CDN carrying X-Linked-Size/-Etag;
    the CDN's presigned URL may refuse HEAD (403), so the redirect is not followed for HEAD."""
    handler = server.httpd.RequestHandlerClass
    real_head, real_get = handler.do_HEAD, handler.do_GET
    sha = hashlib.sha256(BLOB).hexdigest()

    def hub_head(h):
        if h.path == "/resolve/f.bin":
            server.requests.append(("HEAD", h.path, None))
            h.send_response(302)
            h.send_header("Location", server.url + "/f.bin")
            h.send_header("X-Linked-Size", str(len(BLOB)))
            h.send_header("X-Linked-Etag", f'"{sha}"')
            h.send_header("Content-Length", "0")
            h.end_headers()
        else:  # the CDN
            server.requests.append(("HEAD", h.path, None))
            h.send_response(403)
            h.send_header("Content-Length", "0")
            h.end_headers()

    def hub_get(h):
        if h.path == "/resolve/f.bin":
            h.send_response(302)
            h.send_header("Location", server.url + "/f.bin")
            h.send_header("Content-Length", "0")
            h.end_headers()
        else:
            real_get(h)
    monkeypatch.setattr(handler, "do_HEAD", hub_head)
    monkeypatch.setattr(handler, "do_GET", hub_get)
    info = remote_info(server.url + "/resolve/f.bin")
    assert info.size == len(BLOB) and info.sha256 == sha
    assert download(server.url + "/resolve/f.bin", tmp_path / "f.bin").read_bytes() == BLOB
    assert ("HEAD", "/f.bin", None) not in server.requests
    # a server whose HEAD says nothing useful (403 here): the GET's Content-Length decides
    assert remote_info(server.url + "/f.bin") == dl.RemoteInfo()
    assert download(server.url + "/f.bin", tmp_path / "g.bin").read_bytes() == BLOB


def test_fsync_before_the_rename(server, tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(f"replace {os.path.basename(b)}"),
                                                     real_replace(a, b))[1])
    download(server.url + "/f.bin", tmp_path / "f.bin")
    final = events.index("replace f.bin")
    assert "fsync" in events[:final]


def test_stdlib_file_server(tmp_path):
    """http.server's SimpleHTTPRequestHandler (what scripts/check_base_load.py serves with): HEAD
    and Content-Length, no ETag, Range ignored. A dropped part restarts and the file arrives whole."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "f.bin").write_bytes(BLOB)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path / "www")))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/f.bin"
        assert remote_info(url).size == len(BLOB)
        dest = tmp_path / "f.bin"
        (tmp_path / "f.bin.part").write_bytes(BLOB[:100])
        (tmp_path / "f.bin.part.json").write_text(json.dumps({"url": url, "size": len(BLOB), "etag": None,
                                                              "sha256": None, "get_etag": None}))
        assert download(url, dest).read_bytes() == BLOB  # 200 to a Range request: rewritten from 0
        assert not (tmp_path / "f.bin.part").exists()
    finally:
        httpd.shutdown()
        httpd.server_close()
