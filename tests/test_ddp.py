"""Two CPU processes under DDP (gloo) end with the same weights as one process with the same global batch."""
from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from core.loop import fit
from test_loop import ToyTask, final_weights, toy_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, tmp_path, overrides: list[str]) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from core.distributed import cleanup

    try:
        cfg = toy_config(tmp_path, *overrides)
        result = fit(cfg, ToyTask(cfg), tmp_path / "ddp")
        torch.save(final_weights(result), tmp_path / f"weights_rank{rank}.pt")
    finally:
        cleanup()


def test_two_process_ddp_equals_single_process(tmp_path):
    common = ["train.accum_steps=2", "train.epochs=2", "train.eval_every=3"]
    world = 2
    mp.spawn(_worker, args=(world, _free_port(), tmp_path, ["train.batch_size=2", *common]), nprocs=world,
             join=True)
    ddp = [torch.load(tmp_path / f"weights_rank{r}.pt") for r in range(world)]

    cfg = toy_config(tmp_path, "train.batch_size=4", *common)  # 2 ranks x 2 sentences = 4 per micro-batch
    single = final_weights(fit(cfg, ToyTask(cfg), tmp_path / "single"))
    initial = ToyTask(cfg).build_model().state_dict()
    assert (single["classifier.weight"] - initial["classifier.weight"]).abs().max() > 1e-2
    for name in single:
        torch.testing.assert_close(ddp[0][name], single[name], rtol=0, atol=2e-6, msg=name)
        torch.testing.assert_close(ddp[1][name], ddp[0][name], rtol=0, atol=2e-6, msg=name)
    # Adam hides a constant gradient factor (e.g. a missing x world): the logged pre-clip norms do not.
    logs = [train_logs(tmp_path / run) for run in ("ddp", "single")]
    assert len(logs[0]) == len(logs[1]) == 4
    for key in ("grad_norm", "loss"):
        assert [r[key] for r in logs[0]] == pytest.approx([r[key] for r in logs[1]], rel=1e-5)
    assert (tmp_path / "ddp" / "last.pt").is_file()  # rank 0 saved


def train_logs(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "grad_norm" in r]


def test_main_process_follows_torchrun_rank_before_the_group_exists(monkeypatch):
    from core.distributed import is_main_process

    monkeypatch.delenv("RANK", raising=False)
    assert is_main_process()
    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()
