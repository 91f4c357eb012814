"""A small safetensors reader and writer (no pickle, no extra dependency).

File layout: 8-byte little-endian header length n, then n bytes of JSON
{name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}},
then the raw buffer; offsets are relative to the buffer start. Every offset is bounds-checked
against the file before anything is read. get() hands out views of a private memory map of the
file (torch.from_file, so no copy; pages are read on first use); read_into() preads a tensor
straight into memory the caller owns (converting dtype through a bounded bounce buffer).
"""
from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import torch

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the reference implementation's limit


class SafetensorsError(ValueError):
    pass


class SafetensorsReader:
    """reader = SafetensorsReader(path); reader.keys(); reader.get(name) -> read-only-view tensor.

    Use as a context manager (or call close()) to unmap the file. get() returns a view into the
    mapping: copy it (e.g. param.copy_(view)) before the reader is closed.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = open(self.path, "rb")
        self.file_size = os.fstat(self._file.fileno()).st_size
        if self.file_size < 8:
            raise SafetensorsError(f"{self.path}: file too small ({self.file_size} bytes) to hold a header")
        (header_len,) = struct.unpack("<Q", self._file.read(8))
        if header_len > MAX_HEADER_BYTES:
            raise SafetensorsError(f"{self.path}: absurd header length {header_len} (limit {MAX_HEADER_BYTES})")
        if 8 + header_len > self.file_size:
            raise SafetensorsError(f"{self.path}: header length {header_len} runs past the end of the file "
                                   f"({self.file_size} bytes; truncated?)")
        try:
            header = json.loads(self._file.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SafetensorsError(f"{self.path}: header is not valid JSON ({e})") from None
        if not isinstance(header, dict):
            raise SafetensorsError(f"{self.path}: header is not a JSON object")
        self.metadata = header.pop("__metadata__", {}) or {}
        self.data_start = 8 + header_len
        self.entries = {name: self._check_entry(name, e) for name, e in header.items()}
        self._mapped: torch.Tensor | None = None  # the whole file as uint8, mapped on first get()

    def _check_entry(self, name: str, e: dict) -> tuple[torch.dtype, tuple[int, ...], int, int]:
        try:
            dtype, shape, (begin, end) = DTYPES[e["dtype"]], tuple(e["shape"]), e["data_offsets"]
        except KeyError as err:
            raise SafetensorsError(f"{self.path}: tensor {name!r}: unknown dtype or missing field {err}") from None
        except (TypeError, ValueError):
            raise SafetensorsError(f"{self.path}: tensor {name!r}: malformed entry {e}") from None
        if not all(isinstance(d, int) and d >= 0 for d in shape) or not isinstance(begin, int) \
                or not isinstance(end, int):
            raise SafetensorsError(f"{self.path}: tensor {name!r}: malformed shape/offsets {e}")
        nbytes = math.prod(shape) * dtype.itemsize
        if not 0 <= begin <= end or end - begin != nbytes:
            raise SafetensorsError(f"{self.path}: tensor {name!r}: offsets [{begin}, {end}) do not hold "
                                   f"{nbytes} bytes for shape {list(shape)} {e['dtype']}")
        if self.data_start + end > self.file_size:
            raise SafetensorsError(f"{self.path}: tensor {name!r}: offsets [{begin}, {end}) point outside "
                                   f"the file ({self.file_size - self.data_start} data bytes; truncated?)")
        return dtype, shape, begin, end

    def keys(self) -> list[str]:
        return list(self.entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.entries[name][1]

    def get(self, name: str) -> torch.Tensor:
        """A tensor backed by the file's pages: a private (copy-on-write) memory map owned by torch,
        read from disk on first use; writes copy the page and never reach the file."""
        dtype, shape, begin, end = self.entries[name]
        offset = self.data_start + begin
        # Views need aligned offsets, and torch.save of a view needs the mapping's byte size to be a
        # multiple of the element size; otherwise read into fresh memory.
        if end == begin or offset % dtype.itemsize or self.file_size % dtype.itemsize:
            out = torch.empty(shape, dtype=dtype)
            self.read_into(name, out)
            return out
        if self._mapped is None:  # torch owns the mapping: it lives exactly as long as the tensors
            self._mapped = torch.from_file(str(self.path), shared=False, size=self.file_size, dtype=torch.uint8)
        return self._mapped[offset:self.data_start + end].view(dtype).view(shape)

    def read_into(self, name: str, out: torch.Tensor, chunk_bytes: int = 64 << 20) -> None:
        """Fill `out` (contiguous, same number of elements) with a tensor, read with pread straight
        into out's memory when the dtypes match -- no mapping, no page faults, no extra copy --
        else through a bounce buffer of at most chunk_bytes, converting chunk by chunk."""
        dtype, shape, begin, end = self.entries[name]
        if out.numel() != math.prod(shape) or not out.is_contiguous():
            raise SafetensorsError(f"{name}: cannot read {list(shape)} into a {list(out.shape)} "
                                   f"{'non-contiguous ' if not out.is_contiguous() else ''}tensor")
        flat = out.view(-1)
        if out.dtype == dtype:
            self._pread(flat.view(torch.uint8), self.data_start + begin)
            return
        step = max(1, chunk_bytes // dtype.itemsize)
        bounce = torch.empty(min(step, flat.numel()), dtype=dtype)
        for start in range(0, flat.numel(), step):
            buf = bounce[:min(step, flat.numel() - start)]
            self._pread(buf.view(torch.uint8), self.data_start + begin + start * dtype.itemsize)
            flat[start:start + buf.numel()].copy_(buf)

    def _pread(self, dest: torch.Tensor, offset: int) -> None:
        view = memoryview(dest.numpy()).cast("B")
        done = 0
        while done < len(view):  # pread may return short counts for very large reads
            n = os.preadv(self._file.fileno(), [view[done:]], offset + done)
            if n <= 0:
                raise SafetensorsError(f"{self.path}: unexpected end of file at byte {offset + done}")
            done += n

    def close(self) -> None:
        self._mapped = None  # tensors handed out keep the mapping alive
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load_file(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors as independent (copied) tensors."""
    with SafetensorsReader(path) as r:
        return {k: r.get(k).clone() for k in r.keys()}


def save_file(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write tensors (contiguous copies of each, one at a time) in the safetensors format, atomically."""
    header: dict = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for name, t in tensors.items():
        if t.dtype not in DTYPE_NAMES:
            raise SafetensorsError(f"tensor {name!r}: dtype {t.dtype} has no safetensors name")
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # pad so the buffer starts 8-byte aligned
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for t in tensors.values():
            t = t.detach().to("cpu").contiguous()
            if t.numel():
                f.write(t.reshape(-1).view(torch.uint8).numpy().data)  # raw bytes, no extra copy
    os.replace(tmp, path)
