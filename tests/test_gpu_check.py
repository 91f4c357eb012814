"""bench/gpu_check.py: refuses cleanly without CUDA, and its checks' logic runs on CPU tensors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import gpu_check  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_refuses_without_cuda():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "bench/gpu_check.py"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "CUDA" in lines[0]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_parity_check_passes_on_cpu_tensors(precision):
    ok, detail = gpu_check.parity("tiny", precision, "cpu")
    assert ok, detail


def test_parity_check_catches_a_wrong_encoder(monkeypatch):
    real_pair = gpu_check.pair

    def broken(*args, **kwargs):
        ours, ref = real_pair(*args, **kwargs)
        with torch.no_grad():
            name, last = list(ours.named_parameters())[-1]  # the last layer norm's bias: shifts every output
            last.add_(0.01)
        return ours, ref

    monkeypatch.setattr(gpu_check, "pair", broken)
    ok, _ = gpu_check.parity("tiny", "fp32", "cpu")
    assert not ok


def test_step_times_run_on_cpu():
    ours, ref = gpu_check.step_times("tiny", "fp32", "cpu", b=2, t=8, reps=1, warmup=0)
    assert ours > 0 and ref > 0


def test_step_times_take_the_sparse_embedding_gradient():
    """At the mini's size (16,000 rows) our optimizer makes the embedding gradient sparse."""
    ours, ref = gpu_check.step_times("mini", "fp32", "cpu", b=2, t=8, reps=1, warmup=0)
    assert ours > 0 and ref > 0


def test_synthetic_data_is_read_by_the_project_reader(tmp_path):
    from data.conll import read_conll

    root = gpu_check.write_synthetic_panx(tmp_path, sentences=40)
    sentences = read_conll(root / "panx" / "de" / "train.conllu")
    assert len(sentences) == 40
    assert all(len(s.words) == len(s.tags) > 0 for s in sentences)
    assert {t for s in sentences for t in s.tags} <= {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"}


def test_engine_steps_run_the_real_loop_on_cpu():
    ok, detail = gpu_check.engine_steps("fp32", "cpu", steps=3)
    assert ok, detail
