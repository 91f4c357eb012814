"""Generic HTTP(S) download that cannot lie: progress on stderr, resumption, verification, atomic rename.

    download("https://host/file", Path("cache/file"), expected_size=1234) -> Path("cache/file")

The target name appears only for a complete, verified, fsync'ed file (``os.replace``). Until then
the bytes live in ``<name>.part`` beside it, and ``<name>.part.json`` records which version of the
remote file they belong to (size, ETag, sha256), so a later call resumes only the same version.

What "complete" means:
- Size: the caller's ``expected_size``, else the server's (a HEAD's ``X-Linked-Size`` or
  ``Content-Length``, a 206's ``Content-Range`` total, a 200's ``Content-Length``). A body whose
  size nobody announced is accepted only when it was chunked and ended with its terminating
  chunk, or a sha256 matches, or a follow-up ``Range: bytes=N-`` gets 416 ``bytes */N`` from the
  server (nothing after byte N). Otherwise it stays ``.part`` and the call fails.
- sha256: the caller's, else the Hugging Face Hub's ``X-Linked-Etag`` (for LFS files it is the
  sha256 of the content). A mismatch discards the file.

Resumption: a ``.part`` continues (``Range`` + ``If-Range``) only while its record matches what the
server says now; a 206 must start exactly at the part's end (``Content-Range``); a 200 (Range
ignored) rewrites the part from zero; a 416 finishes the part when the server's size equals it
and restarts it otherwise.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20
ROUNDS = 4  # requests one call may make after restarts or a size probe
_HEADERS = {"User-Agent": "xlt/1.0"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE = re.compile(r"^bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)$")


class DownloadError(RuntimeError):
    pass


@dataclass
class RemoteInfo:
    """What a HEAD request says about a URL (None: not announced)."""
    exists: bool = True
    size: int | None = None
    etag: str | None = None
    sha256: str | None = None


def _clean_etag(value: str | None) -> str | None:
    value = (value or "").strip()
    value = value[2:] if value.startswith("W/") else value
    return value.strip('"') or None


class _RecordingRedirects(urllib.request.HTTPRedirectHandler):
    """Keeps the headers of every redirect and stops at the Hub's redirect to its CDN: that one
    carries X-Linked-Size / X-Linked-Etag, and a presigned CDN URL may refuse HEAD."""

    def __init__(self):
        self.hops: list = []

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.hops.append(headers)
        if headers.get("X-Linked-Size") or headers.get("X-Linked-Etag"):
            return None  # urllib then raises HTTPError(code) with these headers
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def remote_info(url: str, timeout: float = 30.0) -> RemoteInfo:
    """HEAD ``url``: exists=False on 404; an empty RemoteInfo when the server will not say (HEAD
    refused, 403 on a presigned URL, ...): the GET then tells the size. No network: DownloadError."""
    redirects = _RecordingRedirects()
    request = urllib.request.Request(url, method="HEAD", headers=_HEADERS)
    try:
        with urllib.request.build_opener(redirects).open(request, timeout=timeout) as response:
            hops = redirects.hops + [response.headers]
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return RemoteInfo(exists=False)
        if not (300 <= e.code < 400 and redirects.hops):
            return RemoteInfo()
        hops = redirects.hops  # stopped at the Hub's CDN redirect
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise DownloadError(f"{url}: {getattr(e, 'reason', e)}") from None
    linked = next((h for h in hops if h.get("X-Linked-Size") or h.get("X-Linked-Etag")), None)
    if linked is not None:  # a Hub LFS file: size and sha256 of the content itself
        size, etag = linked.get("X-Linked-Size"), _clean_etag(linked.get("X-Linked-Etag") or linked.get("ETag"))
        sha256 = etag.lower() if etag and _SHA256.match(etag.lower()) else None
    else:
        size, etag, sha256 = hops[-1].get("Content-Length"), _clean_etag(hops[-1].get("ETag")), None
    return RemoteInfo(True, int(size) if size and size.strip().isdigit() else None, etag, sha256)


def _progress(name: str, done: int, total: int | None, started: float, last: float, final: bool) -> float:
    """One progress line (redrawn in place on a terminal; a new line every 10 s in a log file).
    Returns the time of the last report."""
    now, tty = time.monotonic(), sys.stderr.isatty()
    if not final and now - last < (0.5 if tty else 10.0):
        return last
    rate = done / max(now - started, 1e-6) / 1e6
    pct = f"{100 * done / total:5.1f}% of {total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
    start, end = ("\r", "") if tty else ("", "\n")
    sys.stderr.write(f"{start}[download] {name}: {pct} ({rate:.1f} MB/s){end}")
    sys.stderr.flush()
    return now


class _Part:
    """``<dest>.part`` and its record ``<dest>.part.json`` (url, size, etag, sha256, get_etag)."""

    def __init__(self, dest: Path):
        self.path = dest.with_name(dest.name + ".part")
        self.record_path = dest.with_name(dest.name + ".part.json")

    def size(self) -> int:
        return self.path.stat().st_size if self.path.is_file() else 0

    def record(self) -> dict | None:
        try:
            record = json.loads(self.record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def write_record(self, record: dict) -> None:
        tmp = self.record_path.with_name(self.record_path.name + ".tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, self.record_path)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.record_path.unlink(missing_ok=True)


def _usable(part: _Part, url: str, facts: dict) -> dict:
    """The part's record if the part belongs to the version ``facts`` describe, else {} (discarded)."""
    if not part.path.is_file():
        part.record_path.unlink(missing_ok=True)
        return {}
    record = part.record()
    stale = (record is None or record.get("url") != url
             or any(facts.get(k) is not None and record.get(k) is not None and facts[k] != record[k]
                    for k in ("size", "etag", "sha256"))
             or (record.get("size") is not None and part.size() > record["size"]))
    if stale:  # no record (an older layout), another URL or another version of the file
        part.discard()
        return {}
    return record


def _content_range(value: str | None) -> tuple[int | None, int | None] | None:
    """``bytes a-b/N`` -> (a, N); ``bytes */N`` -> (None, N); N may be None (``*``). None if malformed."""
    match = _CONTENT_RANGE.match((value or "").strip())
    if not match:
        return None
    start = int(match.group(1)) if match.group(1) is not None else None
    return start, int(match.group(3)) if match.group(3) != "*" else None


def _stream(response, part: _Part, start: int, known: int | None, url: str, name: str) -> None:
    """Append the body to the part (rewrite it when ``start`` is 0), fsync'ed even when the
    connection drops; a drop is a DownloadError and the part stays for resuming."""
    started, done, last = time.monotonic(), start, float("-inf")
    try:
        with open(part.path, "ab" if start else "wb") as f:
            try:
                while True:
                    try:
                        chunk = response.read(CHUNK)
                    except http.client.IncompleteRead as e:  # keep what arrived before the drop
                        f.write(e.partial)
                        done += len(e.partial)
                        raise
                    if not chunk:
                        break
                    f.write(chunk)
                    done += len(chunk)
                    last = _progress(name, done, known, started, last, final=False)
            finally:
                f.flush()
                os.fsync(f.fileno())
    except (OSError, http.client.HTTPException) as e:
        raise DownloadError(f"{url}: transfer interrupted after {done} bytes ({e!r}); the partial file "
                            f"{part.path} is kept for resuming") from None
    _progress(name, done, known, started, last, final=True)


def _transfer(url: str, dest: Path, part: _Part, facts: dict, record: dict, probing: bool,
              timeout: float) -> str:
    """One GET into the part. Returns "complete", "restart" (part discarded) or "probe" (the body
    ended without a known length: ask again from its end)."""
    have = part.size()
    known = facts["size"] if facts["size"] is not None else record.get("size")
    request = urllib.request.Request(url, headers=_HEADERS)
    if have:
        request.add_header("Range", f"bytes={have}-")
        if record.get("get_etag") and not record["get_etag"].startswith("W/"):
            request.add_header("If-Range", record["get_etag"])
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing after byte `have`: complete if the server's size agrees
            total = (_content_range(e.headers.get("Content-Range")) or (None, None))[1]
            total = total if total is not None else known
            if total == have:
                return "complete"
            part.discard()
            return "restart"
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise DownloadError(f"{url}: {getattr(e, 'reason', e)}") from None
    with response:
        get_etag = response.headers.get("ETag")
        if response.status == 206:
            span = _content_range(response.headers.get("Content-Range"))
            if (span is None or span[0] != have or (known is not None and span[1] not in (None, known))
                    or (record.get("get_etag") and get_etag and get_etag != record["get_etag"])):
                part.discard()  # not the continuation of this part: start again
                return "restart"
            start, total = have, span[1]
        else:  # 200: the whole file (a server that ignores Range included)
            length = response.headers.get("Content-Length")
            start, total = 0, int(length) if length and length.strip().isdigit() else None
            if probing and total is None and not facts["sha256"]:
                raise DownloadError(
                    f"{url}: the server announces no size and ignores Range, so a complete transfer cannot "
                    f"be told from a dropped one; the {have} bytes received are kept in {part.path}. Pass the "
                    f"expected size or sha256, or put the file at {dest} yourself.")
        if facts["expected_size"] is not None and total is not None and total != facts["expected_size"]:
            raise DownloadError(f"{url}: server announces {total} bytes, expected {facts['expected_size']}")
        if start == 0 and facts["size"] is not None and total is not None and total != facts["size"]:
            raise DownloadError(f"{url}: the GET announces {total} bytes, the HEAD {facts['size']}")
        if start == 0:  # a fresh body: an old part's record says nothing about it
            known = facts["size"] if facts["size"] is not None else total
        known = known if known is not None else total
        part.write_record({"url": url, "size": known, "etag": facts["etag"], "sha256": facts["sha256"],
                           "get_etag": get_etag})
        _stream(response, part, start, known, url, dest.name)
        chunked = bool(getattr(response, "chunked", False))
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    size = part.size()
    if known is not None:
        if size == known:
            return "complete"
        if size > known:
            part.discard()
        raise DownloadError(f"{url}: got {size} bytes, expected {known}"
                            + (f"; the partial file {part.path} is kept for resuming" if size < known else ""))
    return "complete" if chunked or facts["sha256"] else "probe"


def _finish(part: _Part, dest: Path, url: str, sha256: str | None) -> Path:
    """Check the sha256 (if known), fsync, rename the part to ``dest``."""
    if sha256:
        digest = hashlib.sha256()
        with open(part.path, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
        if digest.hexdigest() != sha256:
            part.discard()
            raise DownloadError(f"{url}: sha256 {digest.hexdigest()} differs from the server's {sha256}; "
                                f"the download was discarded")
    fd = os.open(part.path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(part.path, dest)
    part.record_path.unlink(missing_ok=True)
    try:  # make the rename itself durable
        fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return dest


def download(url: str, dest: Path, expected_size: int | None = None, sha256: str | None = None,
             timeout: float = 60.0, remote: RemoteInfo | None = None) -> Path:
    """Fetch ``url`` to ``dest`` (skipped when dest exists with the expected size). Returns dest.

    ``remote``: a ``remote_info(url)`` the caller already has (saves the HEAD request).
    """
    dest = Path(dest)
    if dest.is_file() and (expected_size is None or dest.stat().st_size == expected_size):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    remote = remote if remote is not None else remote_info(url, timeout)
    if not remote.exists:
        raise DownloadError(f"{url}: HTTP 404 Not Found")
    if expected_size is not None and remote.size is not None and remote.size != expected_size:
        raise DownloadError(f"{url}: server announces {remote.size} bytes, expected {expected_size}")
    facts = {"expected_size": expected_size, "size": expected_size if expected_size is not None else remote.size,
             "etag": remote.etag, "sha256": (sha256 or remote.sha256 or "").lower() or None}
    part, probing = _Part(dest), False
    for _ in range(ROUNDS):
        record = _usable(part, url, facts)
        have = part.size()
        if have and have == (facts["size"] if facts["size"] is not None else record.get("size")):
            return _finish(part, dest, url, facts["sha256"])  # a complete part left by a kill
        outcome = _transfer(url, dest, part, facts, record, probing, timeout)
        if outcome == "complete":
            return _finish(part, dest, url, facts["sha256"])
        probing = outcome == "probe"
    raise DownloadError(f"{url}: no verifiable copy after {ROUNDS} requests (the server changes the file, or "
                        f"announces no size); what was received is in {part.path}")
