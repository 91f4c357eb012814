"""Generic HTTPS download: progress on stderr, resume via Range, size check, atomic rename.

    download("https://host/file", Path("cache/file"), expected_size=1234) -> Path("cache/file")

A partial file lives next to the target as "<name>.part"; a later call resumes it with an
HTTP Range request (a server that ignores Range restarts it from zero). The target appears
only when complete (os.replace), so a crash never leaves a truncated file under the real name.
"""
from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    pass


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


def download(url: str, dest: Path, expected_size: int | None = None, timeout: float = 60.0) -> Path:
    """Fetch url to dest (skipped when dest exists with the expected size). Returns dest."""
    dest = Path(dest)
    if dest.is_file() and (expected_size is None or dest.stat().st_size == expected_size):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    if expected_size is not None and have > expected_size:
        part.unlink()  # longer than the real file: it cannot be a prefix of it
        have = 0
    request = urllib.request.Request(url, headers={"User-Agent": "xlt/1.0"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and expected_size is not None and have == expected_size:
            os.replace(part, dest)  # the partial file was already complete
            return dest
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"{url}: {getattr(e, 'reason', e)}") from None
    with response:
        if have and response.status != 206:  # server ignored Range: start again
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else expected_size
        if expected_size is not None and total is not None and total != expected_size:
            raise DownloadError(f"{url}: server announces {total} bytes, expected {expected_size}")
        started, done, last = time.monotonic(), have, float("-inf")
        with open(part, "ab" if have else "wb") as f:
            while chunk := response.read(CHUNK):
                f.write(chunk)
                done += len(chunk)
                last = _progress(dest.name, done, total, started, last, final=False)
        _progress(dest.name, done, total, started, last, final=True)
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    size = part.stat().st_size
    if (expected_size is not None and size != expected_size) or (total is not None and size != total):
        raise DownloadError(f"{url}: got {size} bytes, expected {expected_size or total}; "
                            f"the partial file {part} is kept for resuming")
    os.replace(part, dest)
    return dest
