"""Two gloo processes under DDP compute what one process computes on the same global batch.

Every BatchNorm is synchronised under DDP (backbone and projectors, as in the SIE code; on CPU
through :class:`equivision.ssl.syncbn.GlobalBatchNorm`) and SIE gathers its embeddings across
ranks with gradients, so the first loss, the second loss (after one SGD step, i.e. the gradients
agree) and the weights must match a single process to float32 rounding.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from _pretrain_fakes import tiny_overrides, write_tiny_iebench
from safetensors.torch import load_file

from equivision.ssl.config import load_config, to_dict
from equivision.ssl.train import train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg: dict) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    train(cfg)


def _steps(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "step"]


@pytest.mark.slow  # 10-40 s: two spawned processes import torch and timm
@pytest.mark.parametrize("method", ["sie"])
def test_two_processes_equal_one(method: str, tmp_path: Path) -> None:
    root = write_tiny_iebench(tmp_path / "data", objects=16, size=32)
    extra = {
        "backbone.name": "test_resnet",
        "method.equi_dims": 48,
        "optim.name": "sgd",
        "optim.lr": 0.05,
        "optim.weight_decay": 0.0,
        "max_steps": 2,
    }
    one = train(load_config(overrides=tiny_overrides(root, tmp_path / "one", method, **extra)))
    cfg = to_dict(load_config(overrides=tiny_overrides(root, tmp_path / "two", method, **extra)))
    mp.spawn(_worker, args=(2, _free_port(), cfg), nprocs=2, join=True)
    two = tmp_path / "two" / "run"

    a, b = _steps(one), _steps(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2]
    for ra, rb in zip(a, b, strict=True):
        for key in ("loss", "inv_loss", "equi_loss", "std_loss", "cov_loss"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-5, abs=1e-6), (key, ra["step"])
    assert json.loads((two / "environment.json").read_text())["world_size"] == 2
    wa = load_file(one / "checkpoints/backbone.safetensors")
    wb = load_file(two / "checkpoints/backbone.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:  # after two SGD steps; includes the BatchNorm running statistics
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5)
    record = json.loads((two / "checkpoints/backbone.json").read_text())
    assert record["steps"] == 2 and record["config"]["data"]["batch_size"] == 8
