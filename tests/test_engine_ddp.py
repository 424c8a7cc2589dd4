"""DDP: ``torchrun --nproc-per-node 2 -m esg_lib train`` on CPU (gloo) on a tiny image folder."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image


def _image_folder(root, per_class=16, size=32):
    rng = np.random.default_rng(0)
    for k, name in enumerate(("dents", "rust", "scratch")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(40, 120, (size, size, 3), dtype=np.uint8)
            img[k * 10:(k + 1) * 10] += 120
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    data = _image_folder(tmp_path / "folder")
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "esg_lib", "train", "--dataset", str(data), "--model", "resnet18",
           "--profile", "smoke", "--epochs", "2", "--batch-size", "8", "--set", "augment_copies=0",
           "--set", "fps_iters=1", "--device", "cpu", "--threads", "1", "--out", str(out),
           "--no-progress", "--no-report"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dirs = [p.parent for p in out.rglob("metrics.json")]
    assert len(run_dirs) == 1
    d = run_dirs[0]
    metrics = json.loads((d / "metrics.json").read_text())
    n_train = metrics["split_sizes"]["train"]
    per_epoch = math.ceil(n_train / 2) // 4          # each rank: its half, batches of 8 / 2
    assert metrics["world_size"] == 2 and metrics["steps_per_epoch"] == per_epoch
    assert metrics["steps"] == 2 * per_epoch and metrics["status"] == "done"
    log = [json.loads(ln) for ln in (d / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]       # written once (rank 0 only)
    assert json.loads((d / "meta.json").read_text())["world_size"] == 2
    ck = torch.load(d / "last.pt", weights_only=True)
    assert ck["global_step"] == metrics["steps"] and len(ck["rng"]) == 2
    assert sorted(p.name for p in d.iterdir() if p.suffix == ".tmp") == []
    assert proc.stdout.count("test: acc") == 1
