"""Model resolution: local folder, HF cache layout, download from a loopback HTTP server
(resumption of a dropped transfer, size and the Hub's sha256 checked), the offline error message."""
from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest
import torch

from data.download import DownloadError, download
from models import load_pretrained
from models.encoder import XLMRConfig
from models.export import save_pretrained
from models.heads import XLMRForTokenClassification
from models.resolve import resolve_model_dir
from data.tokenizer import XLMRTokenizer
from loopback import Server


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny random token-classification checkpoint in the HF layout, written by our exporter."""
    folder = tmp_path_factory.mktemp("tiny")
    tok = XLMRTokenizer.train(["ein satz", "noch ein satz hier", "und noch einer"] * 30, 40, folder / "tok")
    cfg = XLMRConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=20)
    model = XLMRForTokenClassification(cfg, num_labels=3)
    model.init_weights(torch.Generator().manual_seed(0))
    save_pretrained(model, tok, folder / "ckpt")
    return folder / "ckpt"


@pytest.fixture
def server(tiny_checkpoint):
    files = {f"/FacebookAI/xlm-roberta-base/resolve/main/{p.name}": p.read_bytes()
             for p in tiny_checkpoint.iterdir() if p.name != "tokenizer_config.json"}
    s = Server(files)
    yield s
    s.close()


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("XLT_CACHE", str(tmp_path / "xlt"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_hub"))
    monkeypatch.delenv("HF_HOME", raising=False)
    return tmp_path


def test_local_folder(tiny_checkpoint, tmp_path):
    assert resolve_model_dir(tiny_checkpoint) == tiny_checkpoint
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        resolve_model_dir(tmp_path)


@pytest.mark.parametrize("env", ["HF_HUB_CACHE", "HF_HOME"])
def test_hf_cache_layout_and_alias(tiny_checkpoint, isolated, monkeypatch, env):
    hub = isolated / "hf_hub" if env == "HF_HUB_CACHE" else isolated / "hf_home" / "hub"
    if env == "HF_HOME":
        monkeypatch.delenv("HF_HUB_CACHE")
        monkeypatch.setenv("HF_HOME", str(isolated / "hf_home"))
    repo = hub / "models--FacebookAI--xlm-roberta-base"
    snap = repo / "snapshots" / "0123abc"
    snap.mkdir(parents=True)
    (repo / "snapshots" / "old").mkdir()  # incomplete snapshot: skipped
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    for p in tiny_checkpoint.iterdir():
        (snap / p.name).write_bytes(p.read_bytes())
    assert resolve_model_dir("xlm-roberta-base") == snap  # old name is an alias
    assert resolve_model_dir("FacebookAI/xlm-roberta-base") == snap
    # refs/main naming a folder outside snapshots/ is not followed (a complete one is there)
    outside = isolated / "outside"
    outside.mkdir()
    for p in tiny_checkpoint.iterdir():
        (outside / p.name).write_bytes(p.read_bytes())
    (repo / "refs" / "main").write_text("../../../outside")
    assert resolve_model_dir("xlm-roberta-base") == snap


def test_download_from_loopback_server(tiny_checkpoint, server, isolated, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    model, tok = load_pretrained("xlm-roberta-base", task="token-classification")
    got = isolated / "xlt" / "models" / "FacebookAI--xlm-roberta-base"
    assert (got / "model.safetensors").read_bytes() == (tiny_checkpoint / "model.safetensors").read_bytes()
    fetched = {p for m, p, _ in server.requests if m == "GET"}
    assert not any(p.endswith("pytorch_model.bin") for _, p, _ in server.requests)  # safetensors came first
    assert {f"/FacebookAI/xlm-roberta-base/resolve/main/{n}" for n in
            ("config.json", "model.safetensors", "sentencepiece.bpe.model", "tokenizer.json")} <= fetched
    ref, _ = load_pretrained(tiny_checkpoint, task="token-classification")
    ids = torch.tensor([[0, 5, 6, 7, 2]])
    assert torch.equal(model(ids, ids.ne(1)), ref(ids, ids.ne(1)))
    server.requests.clear()
    load_pretrained("FacebookAI/xlm-roberta-base", task="token-classification")
    assert server.requests == []  # second time: from our cache


def test_resume_of_truncated_partial_file(tiny_checkpoint, server, tmp_path):
    url = f"{server.url}/FacebookAI/xlm-roberta-base/resolve/main/model.safetensors"
    full = (tiny_checkpoint / "model.safetensors").read_bytes()
    dest = tmp_path / "model.safetensors"
    server.drop_after = 1000  # the connection drops after 1000 bytes: the part stays for resuming
    with pytest.raises(DownloadError, match="kept for resuming"):
        download(url, dest, expected_size=len(full))
    assert not dest.exists() and (tmp_path / "model.safetensors.part").stat().st_size == 1000
    download(url, dest, expected_size=len(full))
    assert dest.read_bytes() == full and not (tmp_path / "model.safetensors.part").exists()
    assert server.requests[-1] == ("GET", "/FacebookAI/xlm-roberta-base/resolve/main/model.safetensors",
                                   "bytes=1000-")
    # A server that ignores Range: the download restarts from zero and is still correct.
    server.honour_range, server.drops = False, 1
    dest.unlink()
    with pytest.raises(DownloadError):
        download(url, dest, expected_size=len(full))
    download(url, dest, expected_size=len(full))
    assert dest.read_bytes() == full
    assert [r[2] for r in server.gets()[-2:]] == [None, "bytes=1000-"]  # asked to resume, got all


def test_lfs_sha256_from_the_hub_is_checked(tiny_checkpoint, server, isolated, monkeypatch):
    """The Hub's HEAD gives X-Linked-Size and X-Linked-Etag (sha256) for LFS files: a corrupt
    weight file is refused, not cached; a good one loads."""
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    server.linked = True
    weights = "/FacebookAI/xlm-roberta-base/resolve/main/model.safetensors"
    good = server.files[weights]
    real_get = server.httpd.RequestHandlerClass.do_GET

    def corrupt_get(handler):  # the CDN serves one flipped byte
        if handler.path == weights:
            server.files[weights] = good[:-1] + bytes([good[-1] ^ 1])
        try:
            real_get(handler)
        finally:
            server.files[weights] = good
    monkeypatch.setattr(server.httpd.RequestHandlerClass, "do_GET", corrupt_get)
    with pytest.raises(FileNotFoundError, match=f"sha256 .* differs from the server's {hashlib.sha256(good).hexdigest()}"):
        resolve_model_dir("xlm-roberta-base")
    cached = isolated / "xlt" / "models" / "FacebookAI--xlm-roberta-base"
    assert not (cached / "model.safetensors").exists() and not (cached / "model.safetensors.part").exists()
    monkeypatch.setattr(server.httpd.RequestHandlerClass, "do_GET", real_get)
    assert (resolve_model_dir("xlm-roberta-base") / "model.safetensors").read_bytes() == good


def test_progress_in_a_log_file_is_a_few_lines(server, tmp_path, capsys):
    """Not a terminal (a log file, CI): no carriage-return redraws, one line per 10 s plus the last."""
    blob = bytes(range(256)) * (5 * 4096)  # 5 MB = 5 read chunks
    server.files["/big.bin"] = blob
    download(f"{server.url}/big.bin", tmp_path / "big.bin", expected_size=len(blob))
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and len(lines) == 2, err  # the first chunk, then the final report
    assert lines[-1].startswith("[download] big.bin: 100.0% of 5.2 MB")
    assert (tmp_path / "big.bin").read_bytes() == blob


def test_size_mismatch_is_an_error(tiny_checkpoint, server, tmp_path):
    url = f"{server.url}/FacebookAI/xlm-roberta-base/resolve/main/config.json"
    real = len((tiny_checkpoint / "config.json").read_bytes())
    with pytest.raises(DownloadError, match=f"server announces {real} bytes, expected {real + 5}"):
        download(url, tmp_path / "config.json", expected_size=real + 5)
    assert not (tmp_path / "config.json").exists()
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{server.url}/nope", tmp_path / "nope")


def test_offline_error_names_files_and_places(isolated, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(FileNotFoundError) as err:
        resolve_model_dir("xlm-roberta-base")
    msg = str(err.value)
    for needle in ("config.json", "model.safetensors or pytorch_model.bin", "sentencepiece.bpe.model",
                   str(isolated / "xlt" / "models" / "FacebookAI--xlm-roberta-base"),
                   "models--FacebookAI--xlm-roberta-base/snapshots/<rev>/", "HF_ENDPOINT"):
        assert needle in msg, needle
