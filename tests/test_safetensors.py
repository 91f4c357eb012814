"""Our safetensors reader/writer: byte-compatible with the reference library, and every malformed
file (truncated, offsets outside the file, absurd header length, bad JSON) rejected clearly."""
from __future__ import annotations

import json
import re
import struct

import pytest
import safetensors.torch
import torch

from models.safetensors_io import SafetensorsError, SafetensorsReader, load_file, save_file


def sample_tensors():
    g = torch.Generator().manual_seed(0)
    return {
        "w": torch.randn(5, 3, generator=g),
        "half": torch.randn(4, generator=g).half(),
        "bf16": torch.randn(2, 3, generator=g).bfloat16(),
        "ids": torch.arange(7, dtype=torch.int64),
        "flags": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "empty": torch.zeros(0, 4),
    }


def test_reference_library_reads_our_files_and_we_read_its(tmp_path):
    tensors = sample_tensors()
    save_file(tensors, tmp_path / "ours.safetensors")
    theirs = safetensors.torch.load_file(tmp_path / "ours.safetensors")
    safetensors.torch.save_file(tensors, tmp_path / "ref.safetensors")
    back = load_file(tmp_path / "ref.safetensors")
    for name, t in tensors.items():
        assert theirs[name].dtype == t.dtype and torch.equal(theirs[name], t), name
        assert back[name].dtype == t.dtype and torch.equal(back[name], t), name


def test_read_into_converts_dtype_in_bounded_chunks(tmp_path):
    w = torch.randn(100, 7)
    save_file({"w": w}, tmp_path / "a.safetensors")
    with SafetensorsReader(tmp_path / "a.safetensors") as r:
        same = torch.empty(100, 7)
        r.read_into("w", same)
        assert torch.equal(same, w)
        low = torch.empty(100, 7, dtype=torch.bfloat16)
        r.read_into("w", low, chunk_bytes=64)  # 16 floats per chunk: many chunks, one partial
        assert torch.equal(low, w.bfloat16())
        with pytest.raises(SafetensorsError, match=r"cannot read \[100, 7\] into a \[7, 99\]"):
            r.read_into("w", torch.empty(7, 99))


def test_get_is_a_view_of_the_mapping(tmp_path):
    save_file({"w": torch.arange(6.0).view(2, 3)}, tmp_path / "a.safetensors")
    with SafetensorsReader(tmp_path / "a.safetensors") as r:
        view = r.get("w")
        assert view.tolist() == [[0, 1, 2], [3, 4, 5]]
        assert r.metadata == {"format": "pt"}
        del view


def write_raw(path, header: dict | bytes, data: bytes = b"", header_len: int | None = None):
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob) if header_len is None else header_len) + blob + data)
    return path


def test_truncated_file_is_rejected(tmp_path):
    save_file({"w": torch.randn(64, 64)}, tmp_path / "a.safetensors")
    raw = (tmp_path / "a.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[:-100])
    with pytest.raises(SafetensorsError, match=r"tensor 'w': offsets \[0, 16384\) point outside the file "
                                               r"\(16284 data bytes; truncated\?\)"):
        SafetensorsReader(tmp_path / "cut.safetensors")
    (tmp_path / "tiny.safetensors").write_bytes(raw[:5])
    with pytest.raises(SafetensorsError, match="file too small"):
        SafetensorsReader(tmp_path / "tiny.safetensors")


def test_offsets_outside_the_file_are_rejected(tmp_path):
    p = write_raw(tmp_path / "a.safetensors",
                  {"w": {"dtype": "F32", "shape": [2], "data_offsets": [1000, 1008]}}, b"\0" * 8)
    with pytest.raises(SafetensorsError, match=r"offsets \[1000, 1008\) point outside the file"):
        SafetensorsReader(p)


def test_offsets_that_disagree_with_the_shape_are_rejected(tmp_path):
    p = write_raw(tmp_path / "a.safetensors",
                  {"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 12)
    with pytest.raises(SafetensorsError, match=r"offsets \[0, 8\) do not hold 12 bytes for shape \[3\] F32"):
        SafetensorsReader(p)
    p = write_raw(tmp_path / "b.safetensors",
                  {"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}, b"\0" * 12)
    with pytest.raises(SafetensorsError, match="do not hold"):
        SafetensorsReader(p)


def test_absurd_header_length_is_rejected(tmp_path):
    p = write_raw(tmp_path / "a.safetensors", b"{}", header_len=2**60)
    with pytest.raises(SafetensorsError, match=rf"^{re.escape(str(p))}: absurd header length 1152921504606846976"):
        SafetensorsReader(p)


def test_bad_json_and_unknown_dtype_are_rejected(tmp_path):
    with pytest.raises(SafetensorsError, match="header is not valid JSON"):
        SafetensorsReader(write_raw(tmp_path / "a.safetensors", b"{not json"))
    p = write_raw(tmp_path / "b.safetensors", {"w": {"dtype": "F8", "shape": [1], "data_offsets": [0, 1]}}, b"\0")
    with pytest.raises(SafetensorsError, match=r"tensor 'w': unknown dtype or missing field 'F8'"):
        SafetensorsReader(p)


def test_mapped_views_survive_close_and_save(tmp_path):
    import io
    w = torch.randn(4, 6)
    save_file({"w": w, "b": torch.arange(3, dtype=torch.int64)}, tmp_path / "a.safetensors")
    r = SafetensorsReader(tmp_path / "a.safetensors")
    view = r.get("w")
    r.close()  # the mapping belongs to the tensor now
    view.add_(1.0)  # copy-on-write: the file keeps its bytes
    assert torch.equal(load_file(tmp_path / "a.safetensors")["w"], w)
    buf = io.BytesIO()
    torch.save({"w": view}, buf)
    buf.seek(0)
    assert torch.equal(torch.load(buf, weights_only=True)["w"], w + 1)


def test_header_length_is_checked_against_the_file_size(tmp_path):
    # a header length under the absurd-size limit but past the end of the file: the short read
    # happens to be valid JSON ('{}'), so only the size check stops it
    p = write_raw(tmp_path / "a.safetensors", b"{}", header_len=40)
    with pytest.raises(SafetensorsError,
                       match=rf"^{re.escape(str(p))}: header length 40 runs past the end of the file \(10 bytes"):
        SafetensorsReader(p)


def test_header_length_that_pushes_the_tensors_past_the_end_is_rejected(tmp_path):
    # the header length claims 4 bytes more than the JSON: the data start moves 4 bytes into the
    # tensor bytes (spaces, so the header still parses) and the tensor would end past the file
    blob = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    data = b" " * 8
    good = write_raw(tmp_path / "good.safetensors", blob, data)
    with SafetensorsReader(good) as reader:
        assert reader.get("w").shape == (2,)
    p = write_raw(tmp_path / "a.safetensors", blob, data, header_len=len(blob) + 4)
    with pytest.raises(SafetensorsError, match=rf"^{re.escape(str(p))}: tensor 'w': offsets \[0, 8\) point outside "
                                               r"the file \(4 data bytes; truncated\?\)"):
        SafetensorsReader(p)
