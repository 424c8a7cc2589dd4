"""Training-loop tests on a tiny synthetic bundle (contract-shaped): resume, determinism, NaN stop,
reuse, outputs, and one training step of every baseline at smoke size."""
from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
import torch

from esg_lib.engine import build_config, fit, train
from esg_lib.engine import runs as R
from esg_lib.engine.config import COMPARISON
from esg_lib.engine.models import build_model, resolve_model
from esg_lib.engine.synthetic import synthetic_bundle

TIMING_KEYS = {"epoch_seconds", "train_seconds", "data_seconds", "data_wait_fraction"}


@pytest.fixture(scope="module")
def bundle():
    return synthetic_bundle(n_train=48, n_val=12, n_test=12, img_size=32, num_classes=3)


def _cfg(tmp_path, **kw):
    base = dict(model="mobilenetv3_large_100", epochs=3, batch_size=16, progress=False,
                out=str(tmp_path), fps_iters=1, fps_warmup=0)
    return build_config("smoke", **{**base, **kw})


def _log(run_dir):
    rows = [json.loads(ln) for ln in (run_dir / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def _weights(run_dir, name="last.pt"):
    return torch.load(run_dir / name, weights_only=True)["model"]


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_a_kill_mid_epoch_is_bit_identical(tmp_path, bundle, monkeypatch):
    # Swin-T uses stochastic depth (timm default 0.1): the RNG state must be restored to match
    ref = fit(_cfg(tmp_path / "a", model="swin-t"), bundle=bundle)

    def kill(step):
        if step == 5:  # epoch 2 of 3 (3 steps per epoch)
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "STEP_HOOK", kill)
    with pytest.raises(KeyboardInterrupt):
        fit(_cfg(tmp_path / "b", model="swin-t"), bundle=bundle)
    killed_dir = next((tmp_path / "b").rglob("last.pt")).parent
    assert torch.load(killed_dir / "last.pt", weights_only=True)["epoch"] == 0
    monkeypatch.setattr(train, "STEP_HOOK", None)
    resumed = fit(_cfg(tmp_path / "b", model="swin-t"), bundle=bundle)

    assert resumed.status == "done" and resumed.run_id == ref.run_id
    assert _same_weights(_weights(ref.run_dir), _weights(resumed.run_dir))
    assert _same_weights(_weights(ref.run_dir, "best.pt"), _weights(resumed.run_dir, "best.pt"))
    assert _log(ref.run_dir) == _log(resumed.run_dir)
    assert ref.metrics["test"] == resumed.metrics["test"]
    assert resumed.metrics["steps"] == ref.metrics["steps"] == 9


RECIPE = dict(drop_path_rate=0.1, mixup_alpha=0.8, cutmix_alpha=1.0, random_erasing=0.25, ema_decay=0.9,
              label_smoothing=0.1)


def test_timm_regularisers_resume_bit_identically_and_test_the_ema_weights(tmp_path, bundle, monkeypatch):
    """Issue 18's recipe pieces (timm's Mixup/CutMix, RandomErasing, ModelEmaV3, stochastic depth):
    they draw from the saved RNGs and the EMA is part of last.pt, so a killed run resumes exactly;
    best.pt holds the EMA weights, which validation chose and test scores."""
    ref = fit(_cfg(tmp_path / "a", model="resnet18", **RECIPE), bundle=bundle)

    def kill(step):
        if step == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "STEP_HOOK", kill)
    with pytest.raises(KeyboardInterrupt):
        fit(_cfg(tmp_path / "b", model="resnet18", **RECIPE), bundle=bundle)
    monkeypatch.setattr(train, "STEP_HOOK", None)
    resumed = fit(_cfg(tmp_path / "b", model="resnet18", **RECIPE), bundle=bundle)
    assert resumed.run_id == ref.run_id and _log(ref.run_dir) == _log(resumed.run_dir)
    assert _same_weights(_weights(ref.run_dir, "best.pt"), _weights(resumed.run_dir, "best.pt"))
    assert ref.metrics["test"] == resumed.metrics["test"]
    last = torch.load(ref.run_dir / "last.pt", weights_only=True)
    assert not _same_weights(last["model"], last["ema"])           # the EMA lags the trained weights
    assert (ref.run_dir / "config.json").read_text().count('"drop_path_rate": 0.1') >= 1
    plain = fit(_cfg(tmp_path / "c", model="resnet18", label_smoothing=0.1), bundle=bundle)
    assert plain.run_id != ref.run_id and _log(plain.run_dir) != _log(ref.run_dir)


def test_a_regulariser_at_its_off_value_leaves_the_run_identity_alone(tmp_path):
    """Fields added after the committed runs (config.LATER_FIELDS) enter identities and config variants
    only when they are switched on, so every earlier run keeps its id and table row."""
    from esg_lib.engine import config as C

    cfg = _cfg(tmp_path)
    assert set(C.LATER_FIELDS) <= set(cfg.to_dict()) and not set(C.LATER_FIELDS) & set(C.identity_fields(cfg))
    assert R.config_variant(cfg.to_dict()) == R.config_variant(C.identity_fields(cfg))
    on = _cfg(tmp_path, ema_decay=0.99)
    assert C.identity_fields(on)["ema_decay"] == 0.99 and R.config_variant(on.to_dict()) != R.config_variant(cfg.to_dict())
    with pytest.raises(C.ConfigError, match="random_erasing"):
        _cfg(tmp_path, random_erasing=1.5)
    with pytest.raises(C.ConfigError, match="stochastic depth"):
        fit(_cfg(tmp_path, model="densenet121", drop_path_rate=0.1, epochs=1),
            bundle=synthetic_bundle(n_train=16, n_val=4, n_test=4, img_size=32, num_classes=3))


def test_same_seed_same_metrics_and_other_seed_differs(tmp_path, bundle):
    a = fit(_cfg(tmp_path / "a", epochs=2, model="resnet18"), bundle=bundle)
    b = fit(_cfg(tmp_path / "b", epochs=2, model="resnet18"), bundle=bundle)
    c = fit(_cfg(tmp_path / "c", epochs=2, model="resnet18", seed=1), bundle=bundle)
    assert a.metrics["test"] == b.metrics["test"]
    assert _log(a.run_dir) == _log(b.run_dir)
    assert _same_weights(_weights(a.run_dir), _weights(b.run_dir))
    assert not _same_weights(_weights(a.run_dir), _weights(c.run_dir))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, bundle, monkeypatch):
    real = train.build_criterion

    def poisoned(cfg):
        loss, calls = real(cfg), {"n": 0}

        def criterion(logits, y):
            calls["n"] += 1
            out = loss(logits, y)
            return out * float("nan") if calls["n"] > 4 else out  # epoch 2, 2nd step

        return criterion

    monkeypatch.setattr(train, "build_criterion", poisoned)
    with pytest.raises(train.TrainingDiverged, match="non-finite loss at epoch 2"):
        fit(_cfg(tmp_path, model="resnet18"), bundle=bundle)
    run_dir = next(tmp_path.rglob("metrics.json")).parent
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "diverged"
    last = torch.load(run_dir / "last.pt", weights_only=True)
    assert last["epoch"] == 0 and last["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    assert len(_log(run_dir)) == 1
    monkeypatch.setattr(train, "build_criterion", real)  # a diverged run is not silently retried
    with pytest.raises(train.TrainingDiverged, match="--force retrains it"):
        fit(_cfg(tmp_path, model="resnet18"), bundle=bundle)
    assert fit(_cfg(tmp_path, model="resnet18"), bundle=bundle, force=True).status == "done"


def test_finished_runs_are_reused_unless_forced(tmp_path, bundle):
    cfg = _cfg(tmp_path, epochs=1, model="resnet18")
    first = fit(cfg, bundle=bundle)
    again = fit(cfg, bundle=bundle)
    assert (first.status, again.status) == ("done", "reused")
    assert again.metrics == first.metrics
    forced = fit(cfg, bundle=bundle, force=True)
    assert forced.status == "done" and forced.run_dir == first.run_dir


def test_keep_last_false_drops_last_pt_once_done_and_keeps_the_run_identity(tmp_path, bundle):
    kept = fit(_cfg(tmp_path / "a", epochs=1, model="resnet18"), bundle=bundle)
    dropped = fit(_cfg(tmp_path / "b", epochs=1, model="resnet18", keep_last=False), bundle=bundle)
    assert dropped.run_id == kept.run_id and dropped.metrics["test"] == kept.metrics["test"]
    assert (kept.run_dir / "last.pt").is_file() and not (dropped.run_dir / "last.pt").exists()
    assert (dropped.run_dir / "best.pt").is_file()   # Grad-CAM and evaluation still have their weights
    assert fit(_cfg(tmp_path / "b", epochs=1, model="resnet18", keep_last=False), bundle=bundle).status == "reused"


def test_a_validation_only_run_predicts_no_test_and_a_scoring_config_finishes_it_later(tmp_path, bundle):
    """``score_test`` off (search trials): no test predictions, no FPS, same run identity. The same
    config with it on does not reuse that run as finished: it resumes to scoring, and the test numbers
    are those of a run scored at once."""
    scored = fit(_cfg(tmp_path / "a", epochs=2, model="resnet18"), bundle=bundle)
    blind = fit(_cfg(tmp_path / "b", epochs=2, model="resnet18", score_test=False), bundle=bundle)
    assert blind.run_id == scored.run_id and blind.status == "done"
    assert blind.metrics["test"] is None and blind.metrics["fps"] is None
    assert not (blind.run_dir / "fps.json").exists()
    assert {p.name for p in blind.run_dir.iterdir()} < {p.name for p in scored.run_dir.iterdir()}
    assert fit(_cfg(tmp_path / "b", epochs=2, model="resnet18", score_test=False), bundle=bundle).status == "reused"
    later = fit(_cfg(tmp_path / "b", epochs=2, model="resnet18"), bundle=bundle)
    assert later.status == "done" and later.metrics["test"] == scored.metrics["test"]
    assert _log(later.run_dir) == _log(scored.run_dir)   # scoring trained nothing more


def _hold_lock(folder, pid, host=None):
    lock = folder.with_name(folder.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"host": host or platform.node(), "pid": pid, "started": "earlier"}))
    return lock


def test_run_lock_is_exclusive_names_its_holder_and_takes_over_a_dead_ones(tmp_path):
    folder = tmp_path / "runs" / "s0-abc"
    with R.RunLock(folder) as held:
        assert json.loads(held.path.read_text())["pid"] == os.getpid()
        with pytest.raises(R.RunBusy, match="already trains"):
            R.RunLock(folder).acquire()
    assert not held.path.exists()                       # released on exit

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = _hold_lock(folder, sleeper.pid)
        with pytest.raises(R.RunBusy, match=f"pid {sleeper.pid} on .* delete {lock}"):
            R.RunLock(folder).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    with R.RunLock(folder):                             # its holder is dead: stale, taken over
        assert json.loads(lock.read_text())["pid"] == os.getpid()

    _hold_lock(folder, sleeper.pid, host="another-host")  # can't see that host's processes: trusted
    with pytest.raises(R.RunBusy, match="another-host"):
        R.RunLock(folder).acquire()


def test_sigterm_to_the_cli_releases_a_held_run_lock(tmp_path):
    script = ("import sys, time\n"
              "from esg_lib.cli import exit_cleanly_on_sigterm\n"
              "from esg_lib.engine.runs import RunLock\n"
              "exit_cleanly_on_sigterm()\n"
              f"with RunLock({str(tmp_path / 's0-x')!r}):\n"
              "    print('held', flush=True)\n"
              "    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held" and (tmp_path / "s0-x.lock").exists()
    proc.terminate()                                    # SIGTERM, as pkill and batch systems send
    assert proc.wait(timeout=30) == 143 and not (tmp_path / "s0-x.lock").exists()


def test_a_run_another_live_process_trains_is_refused_untouched(tmp_path, bundle):
    cfg = _cfg(tmp_path, epochs=1, model="resnet18")
    folder = train.planned_run_dir(cfg, bundle)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = _hold_lock(folder, sleeper.pid)
        with pytest.raises(R.RunBusy, match="is being trained by pid"):
            fit(cfg, bundle=bundle)
        with pytest.raises(R.RunBusy):
            fit(cfg, bundle=bundle, force=True)         # --force must not delete a live run either
        assert not folder.exists() and lock.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert fit(cfg, bundle=bundle).status == "done" and not lock.exists()


def test_run_folder_holds_log_metadata_checkpoints_predictions_and_features(tmp_path, bundle):
    res = fit(_cfg(tmp_path, epochs=2, model="convnextv2_atto"), bundle=bundle)
    d = res.run_dir
    for name in ("config.json", "meta.json", "log.jsonl", "last.pt", "best.pt", "metrics.json",
                 "fps.json", "test_predictions.csv", "test_confusion.csv", "test_report.json",
                 "test_features.npz"):
        assert (d / name).is_file(), name
    meta = json.loads((d / "meta.json").read_text())
    assert meta["status"] == "done" and meta["seed"] == 0 and "torch" in meta["versions"]
    assert "commit" in meta["git"] and meta["hardware"]["cpu_count"] and meta["wall_seconds"] > 0
    log = _log(d)
    assert [r["epoch"] for r in log] == [1, 2]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "val_f1", "lr"} <= set(log[0])
    raw = [json.loads(ln) for ln in (d / "log.jsonl").read_text().splitlines()]
    for r in raw:  # the input pipeline's wait is measured inside the epoch's training time
        assert 0 <= r["data_seconds"] < r["epoch_seconds"] and 0 <= r["data_wait_fraction"] < 1
    m = res.metrics
    assert m["best_epoch"] in (1, 2) and m["test"]["n"] == 12 and m["steps"] == 6
    with open(d / "test_predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and rows[0]["path"] == "test/0.png"
    assert sum(float(rows[0][f"p_class{k}"]) for k in range(3)) == pytest.approx(1, abs=1e-4)
    feats = np.load(d / "test_features.npz")
    assert feats["features"].shape == (12, 320) and (feats["labels"] == bundle.test.labels.numpy()).all()
    fps = json.loads((d / "fps.json").read_text())
    assert fps["fps"] > 0 and {"batch_size", "warmup", "iters", "threads", "device"} <= set(fps)
    ck = torch.load(d / "best.pt", weights_only=True)
    assert ck["class_names"] == bundle.class_names and ck["config"]["img_size"] == 32


def test_warmup_then_cosine_schedule_per_step():
    cfg = build_config("smoke", epochs=4, warmup_epochs=1, lr=1e-3, min_lr=1e-6, warmup_lr=1e-6)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = train.build_scheduler(opt, cfg, steps_per_epoch=5)
    lrs = []
    for step in range(20):
        sched.step_update(num_updates=step)
        lrs.append(opt.param_groups[0]["lr"])
    warm, decay = lrs[:6], lrs[5:]
    assert lrs[0] == pytest.approx(1e-6) and all(a < b for a, b in zip(warm, warm[1:]))
    assert all(a > b for a, b in zip(decay, decay[1:])) and lrs[-1] > 1e-6


@pytest.mark.parametrize("key", COMPARISON)
def test_every_baseline_builds_and_trains_one_step_at_smoke_size(key):
    cfg = build_config("smoke", model=key)
    spec = resolve_model(key, "smoke")
    torch.manual_seed(0)
    model = build_model(spec, num_classes=7, img_size=cfg.img_size).train()
    opt = train.build_optimizer(model, cfg)
    x, y = torch.randn(4, 3, cfg.img_size, cfg.img_size), torch.tensor([0, 1, 2, 3])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = train.build_criterion(cfg)(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    changed = sum(not torch.equal(before[n], p) for n, p in model.named_parameters())
    assert changed > len(before) // 2
    with torch.no_grad():
        feats = model.eval().forward_head(model.forward_features(x), pre_logits=True)
    assert feats.shape[0] == 4 and feats.shape[1] in (model.num_features, getattr(model, "head_hidden_size", 0))
