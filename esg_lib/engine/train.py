"""``fit(config)``: the one training loop for every model, profile and machine.

Recipe (paper: cross-entropy, AdamW, warm-up, lr 1e-4, batch 64, 100 epochs; nothing else given):

* AdamW through ``timm.optim.create_optimizer_v2`` with weight decay 0.05 (ConvNeXt-V2's value; the
  paper names none) on weights only: norms, biases and GRN γ/β get none
  (:func:`esg_lib.engine.models.no_weight_decay_names`).
* ``timm.scheduler`` cosine decay with linear warm-up, updated every optimiser step.
* "Same budget" = same optimiser steps and schedule for every model: the training split is cut into
  ``floor(N / batch)`` full batches per epoch (the last partial batch is dropped, which also keeps
  BatchNorm away from 1-image batches), so steps = epochs × that, for every model.
* The best checkpoint is chosen on the validation split (``select_metric``, default macro-F1),
  never on test; test is scored once, at the end, with the best weights.
* CUDA: AMP (bf16 where supported, else fp16 with a GradScaler) and channels_last. CPU: one
  process uses ``threads`` (default: all cores / processes) intra-op threads.
* Determinism and exact resume: data order is a function of (seed, epoch) (``DistributedSampler``
  with ``set_epoch``, also for one process); ``last.pt`` is written after every epoch with the
  model, optimiser, scheduler, scaler and the torch/numpy/python RNG states, so a run killed at
  any point restarts from the last finished epoch and ends bit-identical to an uninterrupted run
  on the same machine and thread count. ``torch.use_deterministic_algorithms(True, warn_only=True)``.
* A non-finite loss stops the run (:class:`TrainingDiverged`) before the optimiser step; the last
  good ``last.pt`` / ``best.pt`` are kept and ``metrics.json`` records ``status: diverged``.
* DDP: started by ``torchrun`` (``WORLD_SIZE`` > 1): NCCL on GPUs, gloo on CPU, ``batch_size`` is
  the global batch (split across processes), only rank 0 writes.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from esg_lib.errors import UserError

from . import evaluate as E
from . import runs as R
from .config import TrainConfig, validate
from .models import check_input_size, model_for_config, no_weight_decay_names

# Called after every optimiser step with the global step (tests use it to simulate a kill).
STEP_HOOK: Callable[[int], None] | None = None


class TrainingDiverged(UserError):
    """The loss became NaN or inf; the run stopped and kept its last good checkpoint."""


@dataclass
class FitResult:
    run_dir: Path
    run_id: str
    status: str                       # done | reused | diverged
    metrics: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------- runtime
@dataclass
class Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def setup_distributed(device_pref: str) -> Dist:
    """Join the process group that ``torchrun`` describes in the environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    initialized = False
    if not torch.distributed.is_initialized():
        use_cuda = torch.cuda.is_available() and device_pref != "cpu"
        if use_cuda:
            torch.cuda.set_device(local_rank)
        torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
        initialized = True
    return Dist(world, rank, local_rank, initialized)


def resolve_device(pref: str, dist: Dist) -> torch.device:
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device {pref!r} requested but CUDA is not available")
        return torch.device(f"cuda:{dist.local_rank}" if pref == "cuda" else pref)
    if pref != "cpu":
        raise UserError(f"unknown device {pref!r} (auto, cpu, cuda, cuda:N)")
    return torch.device("cpu")


def setup_threads(threads: int | None, dist: Dist) -> int:
    n = threads or max(1, (os.cpu_count() or 1) // dist.world)
    torch.set_num_threads(n)
    return n


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": _to_lists(random.getstate()),
             "numpy": [np_state[0], np_state[1].tolist(), *[_plain(v) for v in np_state[2:]]]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_to_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), *n[2:]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


# ----------------------------------------------------------------------------------- data
def prepare_bundle(cfg: TrainConfig):
    """``esg_lib.data.prepare_data`` with the config's data fields (see the team's Data API)."""
    try:
        from esg_lib.data import prepare_data
    except ImportError as exc:
        raise UserError(f"the data area is not available ({exc})") from None
    return prepare_data(dataset=cfg.dataset, img_size=cfg.img_size, seed=cfg.seed,
                        protocol=cfg.protocol, val_fraction=cfg.val_fraction,
                        test_fraction=cfg.test_fraction, max_images=cfg.max_images,
                        augment_copies=cfg.augment_copies, online_augment=cfg.online_augment)


# A bundle prepared with other values of these would be mislabelled by the run's config. The seed
# is not among them: the same split with another initialisation seed is a legitimate experiment
# (the run identity records the bundle's own split seed).
_BUNDLE_FIELDS = ("img_size", "protocol", "val_fraction", "test_fraction", "max_images", "augment_copies")


def matching_bundle(cfg: TrainConfig, bundle: Any = None):
    """``bundle`` made to fit ``cfg``: prepared when None; its online augmentation switched to the
    config's (models of one seed share the decoded split even when their tuned recipes differ);
    a bundle prepared for another split, size or protocol is refused rather than silently used."""
    if bundle is None:
        return prepare_bundle(cfg)
    ident = bundle.identity
    wrong = [f for f in _BUNDLE_FIELDS if f in ident and ident[f] != getattr(cfg, f)]
    if wrong:
        raise ValueError(f"the data bundle does not match the config ({', '.join(wrong)} differ)")
    if bool(ident.get("online_augment")) == bool(cfg.online_augment):
        return bundle
    from esg_lib.data.augment import online_params, online_transform

    train = copy.copy(bundle.train)
    train.transform = online_transform() if cfg.online_augment else None
    identity = {**ident, "online_augment": online_params() if cfg.online_augment else False}
    return dataclasses.replace(bundle, train=train, identity=identity)


def planned_run_dir(cfg: TrainConfig, bundle: Any) -> Path:
    """The folder :func:`fit` would use for ``cfg`` on ``bundle``, without building the model."""
    from .models import resolve_model

    bundle = matching_bundle(cfg, bundle)
    spec = resolve_model(cfg.model, cfg.profile)
    return R.run_dir(cfg, bundle.dataset_name, R.run_hash(R.run_identity(cfg, spec, bundle.identity)))


def train_loader(dataset, cfg: TrainConfig, dist: Dist):
    if cfg.batch_size % dist.world:
        raise UserError(f"batch_size {cfg.batch_size} is not divisible by {dist.world} processes")
    per_rank = cfg.batch_size // dist.world
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=dist.world, rank=dist.rank,
                                                  shuffle=True, seed=cfg.seed, drop_last=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=per_rank, sampler=sampler,
                                         drop_last=True, num_workers=cfg.num_workers,
                                         persistent_workers=False)
    if len(loader) == 0:
        raise UserError(f"training split ({len(dataset)} images) is smaller than one batch "
                        f"({cfg.batch_size}); lower --batch-size")
    return loader, sampler


# ----------------------------------------------------------------------------------- pieces
def build_criterion(cfg: TrainConfig) -> nn.Module:
    return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    from timm.optim import create_optimizer_v2, param_groups_weight_decay

    groups = param_groups_weight_decay(model, cfg.weight_decay,
                                       no_weight_decay_list=no_weight_decay_names(model))
    return create_optimizer_v2(groups, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    from timm.scheduler import create_scheduler_v2

    sched, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=cfg.epochs,
                                   warmup_epochs=cfg.warmup_epochs, warmup_lr=cfg.warmup_lr,
                                   min_lr=cfg.min_lr, step_on_epochs=False,
                                   updates_per_epoch=steps_per_epoch)
    return sched


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error here
        raise UserError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0][:200]}") from None


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _reduce(values: list[float], dist: Dist, device: torch.device) -> list[float]:
    if dist.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


# ----------------------------------------------------------------------------------- fit
def fit(config: TrainConfig, bundle: Any = None, force: bool = False) -> FitResult:
    """Train (or resume, or reuse) one run and score it on the test split.

    ``bundle`` is a prepared :class:`esg_lib.data.DataBundle` (prepared from the config when
    omitted). A finished run with the same identity is reused unless ``force``; an unfinished one
    resumes from its ``last.pt``.
    """
    cfg = config
    validate(cfg)
    dist = setup_distributed(cfg.device)
    try:
        return _fit(cfg, bundle, force, dist)
    finally:
        if dist.initialized_here:
            torch.distributed.destroy_process_group()


def _fit(cfg: TrainConfig, bundle: Any, force: bool, dist: Dist) -> FitResult:
    t_start = time.time()
    device = resolve_device(cfg.device, dist)
    threads = setup_threads(cfg.threads, dist)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
    bundle = matching_bundle(cfg, bundle)
    num_classes = len(bundle.class_names)

    seed_everything(cfg.seed)
    model, spec = model_for_config(cfg, num_classes)
    check_input_size(model, spec.name, cfg.img_size)
    payload = R.run_identity(cfg, spec, bundle.identity)
    run_id = R.run_hash(payload)
    folder = R.run_dir(cfg, bundle.dataset_name, run_id)

    lock, busy = R.RunLock(folder), ""
    if dist.main:
        try:
            lock.acquire()
        except R.RunBusy as exc:
            busy = str(exc)
    if _reduce([1.0 if busy else 0.0], dist, device)[0] > 0:   # every rank stops, not only rank 0
        raise R.RunBusy(busy or f"{folder}: rank 0 could not take the run's lock")
    try:
        return _train(cfg, bundle, force, dist, device, threads, model, spec, payload, run_id, folder,
                      t_start)
    finally:
        lock.release()


def _train(cfg: TrainConfig, bundle: Any, force: bool, dist: Dist, device: torch.device, threads: int,
           model: nn.Module, spec: Any, payload: dict[str, Any], run_id: str, folder: Path,
           t_start: float) -> FitResult:
    """The body of :func:`fit` for one run folder, under that run's :class:`~.runs.RunLock` (so the
    finished/diverged check below sees what a process that held the lock before us wrote)."""
    say = print if dist.main else (lambda *a, **k: None)
    num_classes = len(bundle.class_names)
    previous = R.read_json(folder / "metrics.json") or {}
    if previous.get("status") == "done" and not force:
        say(f"reusing finished run {folder}")
        return FitResult(folder, run_id, "reused", previous)
    if previous.get("status") == "diverged" and not force:  # deterministic: it would diverge again
        raise TrainingDiverged(f"{previous.get('message', 'diverged earlier')} "
                               f"[{folder}; --force retrains it]")
    if dist.main:
        if force and folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
    dist.barrier()

    model.to(device)
    use_amp = cfg.amp and device.type == "cuda"
    if device.type == "cuda" and cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    loader, sampler = train_loader(bundle.train, cfg, dist)
    steps_per_epoch = len(loader)
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
    criterion = build_criterion(cfg)
    fp16 = use_amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    n_params = sum(p.numel() for p in model.parameters())

    start_epoch, global_step = 0, 0
    best = {"epoch": -1, "value": None, "metrics": None}
    train_seconds = 0.0
    last_path, best_path = folder / "last.pt", folder / "best.pt"
    if last_path.is_file():
        ck = load_checkpoint(last_path)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        start_epoch, global_step = ck["epoch"] + 1, ck["global_step"]
        best, train_seconds = ck["best"], ck["train_seconds"]
        set_rng_state(ck["rng"][dist.rank] if dist.rank < len(ck["rng"]) else ck["rng"][0])
        say(f"resuming {folder} after epoch {ck['epoch'] + 1}/{cfg.epochs}")
        if dist.main:
            _truncate_log(folder / "log.jsonl", ck["epoch"])

    meta_static = {
        "run_id": run_id, "seed": cfg.seed, "git": R.git_commit(), "versions": R.package_versions(),
        "hardware": R.hardware(device), "device": str(device), "threads": threads,
        "world_size": dist.world, "amp": use_amp, "started": R.now_iso(),
        "command": " ".join(sys.argv),
    }
    common = {"run_id": run_id, "identity": payload, "config": cfg.to_dict(),
              "model_spec": R.spec_dict(spec), "dataset_name": bundle.dataset_name,
              "class_names": list(bundle.class_names),
              "display_names": list(getattr(bundle, "display_names", bundle.class_names)),
              "mean": [float(v) for v in _as_list(bundle.mean)],
              "std": [float(v) for v in _as_list(bundle.std)],
              "num_classes": num_classes, "params": n_params,
              "color_mode": (bundle.identity.get("decode") or {}).get("color_mode", "RGB")}
    # inside a notebook: one updating bar for the whole run (epochs in its postfix) and, at the end,
    # one summary line; in a terminal or a log: a bar per epoch and a line per epoch
    run_bar = _run_progress(cfg.progress and dist.main, total_steps, global_step,
                            f"{spec.name} seed {cfg.seed}")
    say_detail = say if run_bar is None else (lambda *a, **k: None)   # the header and per-epoch lines
    if dist.main:
        R.write_json(folder / "config.json", {**common, "identity": payload})
        R.write_json(folder / "meta.json", {**meta_static, "status": "running"})
        say_detail(f"run {folder}: {spec.name}, {n_params / 1e6:.2f}M params, {len(bundle.train)} train "
            f"images, {steps_per_epoch} steps/epoch, {total_steps} steps, device {device}, "
            f"{threads} threads, world {dist.world}")

    train_model: nn.Module = model
    if dist.world > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:  # runtime only: same parameters and state-dict keys (the module is wrapped, not changed)
        from .compile import compile_model
        train_model = compile_model(train_model, device)

    status = "done"
    for epoch in range(start_epoch, cfg.epochs):
        if global_step >= total_steps:
            break
        t0 = time.time()
        sampler.set_epoch(epoch)
        train_model.train()
        loss_sum = correct = seen = 0.0
        bar = loader if run_bar is not None else _progress(loader, cfg.progress and dist.main,
                                                            f"{spec.name} ep {epoch + 1}/{cfg.epochs}")
        diverged = False
        data_seconds = 0.0  # time spent waiting for the next batch: the input pipeline's share
        t_fetch = time.perf_counter()
        for x, y in bar:
            data_seconds += time.perf_counter() - t_fetch
            x, y = x.to(device, non_blocking=True), torch.as_tensor(y).to(device, non_blocking=True)
            if device.type == "cuda" and cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with E.autocast_context(device, use_amp):
                logits = train_model(x)
                loss = criterion(logits.float(), y)
            bad = torch.tensor([0.0 if torch.isfinite(loss) else 1.0], device=device)
            if dist.world > 1:
                torch.distributed.all_reduce(bad)
            if bad.item() > 0:
                diverged = True
                break
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            global_step += 1
            scheduler.step_update(num_updates=global_step)
            loss_sum += float(loss.detach()) * len(y)
            correct += float((logits.argmax(1) == y).sum())
            seen += len(y)
            if run_bar is not None:
                run_bar.update(1)
                run_bar.set_postfix(epoch=f"{epoch + 1}/{cfg.epochs}", loss=f"{loss_sum / seen:.4f}",
                                    refresh=False)
            elif hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
            if STEP_HOOK is not None:
                STEP_HOOK(global_step)
            if global_step >= total_steps:
                break
            t_fetch = time.perf_counter()
        if diverged:
            if run_bar is not None:
                run_bar.close()
            status = "diverged"
            msg = (f"non-finite loss at epoch {epoch + 1}, step {global_step + 1}: stopped; "
                   f"kept the last good checkpoint ({last_path if last_path.exists() else 'none yet'})")
            if dist.main:
                R.write_json(folder / "meta.json", {**meta_static, "status": status, "message": msg,
                                                    "finished": R.now_iso()})
                R.write_json(folder / "metrics.json", {"status": status, "message": msg,
                                                       "epoch": epoch + 1, "step": global_step + 1})
            raise TrainingDiverged(msg)
        loss_sum, correct, seen = _reduce([loss_sum, correct, seen], dist, device)
        epoch_train_seconds = time.time() - t0
        train_seconds += epoch_train_seconds
        val = _validate(model, bundle, cfg, device, use_amp)
        record = {"epoch": epoch + 1, "step": global_step, "lr": optimizer.param_groups[0]["lr"],
                  "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
                  "val_loss": val.get("loss"), "val_acc": val.get("acc"), "val_f1": val.get("f1"),
                  "epoch_seconds": time.time() - t0, "train_seconds": train_seconds,
                  "data_seconds": data_seconds, "data_wait_fraction": data_seconds / max(epoch_train_seconds, 1e-9)}
        improved = _is_better(record, best, cfg.select_metric)
        if improved:
            best = {"epoch": epoch + 1, "value": record.get(cfg.select_metric),
                    "metrics": {k: record[k] for k in ("val_loss", "val_acc", "val_f1")}}
        if dist.main:
            with open(folder / "log.jsonl", "a") as fh:
                fh.write(json.dumps({**record, "best": improved}) + "\n")
            state = {"model": model.state_dict(), "epoch": epoch, "global_step": global_step,
                     "best": best, "train_seconds": train_seconds, **common}
            if improved:
                save_checkpoint(best_path, state)
            save_checkpoint(last_path, {**state, "optimizer": optimizer.state_dict(),
                                        "scheduler": scheduler.state_dict(),
                                        "scaler": scaler.state_dict(),
                                        "rng": _gather_rng(dist)})
        else:
            _gather_rng(dist)
        dist.barrier()
        if run_bar is not None:
            run_bar.set_postfix(epoch=f"{epoch + 1}/{cfg.epochs}", loss=f"{record['train_loss']:.4f}",
                                val_acc=_fmt(record["val_acc"]), val_f1=_fmt(record["val_f1"]))
        say_detail(f"epoch {epoch + 1}: train loss {record['train_loss']:.4f} acc {record['train_acc']:.4f}"
            f" | val loss {_fmt(record['val_loss'])} acc {_fmt(record['val_acc'])} "
            f"f1 {_fmt(record['val_f1'])}{' *' if improved else ''}")

    if run_bar is not None:
        run_bar.close()
    metrics: dict[str, Any] = {}
    if dist.main:
        metrics = _finish(folder, model, bundle, cfg, device, use_amp, best, best_path, global_step,
                          steps_per_epoch, n_params, train_seconds, t_start, meta_static, common)
    dist.barrier()
    if not dist.main:
        metrics = R.read_json(folder / "metrics.json") or {}
    return FitResult(folder, run_id, status, metrics)


def _finish(folder, model, bundle, cfg, device, use_amp, best, best_path, global_step,
            steps_per_epoch, n_params, train_seconds, t_start, meta_static, common) -> dict[str, Any]:
    if best_path.is_file():
        model.load_state_dict(load_checkpoint(best_path)["model"])
    out = E.predict_dataset(model, bundle.test, device, cfg.eval_batch_size,
                            features=cfg.save_features, amp=use_amp,
                            channels_last=cfg.channels_last, num_workers=cfg.num_workers)
    summary = E.summarize(out, list(bundle.class_names))
    E.write_outputs(folder, out, summary, list(bundle.class_names),
                    getattr(bundle.test, "paths", None))
    fps = E.measure_fps(model, cfg.img_size, device, cfg.fps_batch_size, cfg.fps_warmup,
                        cfg.fps_iters, use_amp, cfg.channels_last)
    R.write_json(folder / "fps.json", fps)
    wall = time.time() - t_start
    metrics = {
        "status": "done", "run_id": common["run_id"], "model": cfg.model,
        "timm_name": common["model_spec"]["name"], "dataset": bundle.dataset_name,
        "profile": cfg.profile, "seed": cfg.seed, "params": n_params, "steps": global_step,
        "steps_per_epoch": steps_per_epoch, "world_size": meta_static["world_size"],
        "split_sizes": {s: len(getattr(bundle, s)) for s in ("train", "val", "test")},
        "best_epoch": best["epoch"], "val_best": best["metrics"],
        "test": {k: summary[k] for k in ("acc", "precision", "recall", "f1", "loss", "n")},
        "fps": fps["fps"], "fps_protocol": {k: v for k, v in fps.items() if k != "fps"},
        "gmacs": R.run_gmacs(folder),
        "train_seconds": train_seconds, "wall_seconds": wall,
    }
    R.write_json(folder / "metrics.json", metrics)
    R.write_json(folder / "meta.json", {**meta_static, "status": "done", "finished": R.now_iso(),
                                        "wall_seconds": wall, "train_seconds": train_seconds})
    if not cfg.keep_last:   # only a resume needs it, and a finished run is reused, never resumed
        (folder / "last.pt").unlink(missing_ok=True)
    t = metrics["test"]
    print(f"test: acc {t['acc']:.4f} precision {t['precision']:.4f} recall {t['recall']:.4f} "
          f"f1 {t['f1']:.4f} | fps {fps['fps']:.1f} | {folder}")
    return metrics


def _validate(model, bundle, cfg, device, use_amp) -> dict[str, Any]:
    if len(bundle.val) == 0:
        return {}
    out = E.predict_dataset(model, bundle.val, device, cfg.eval_batch_size, amp=use_amp,
                            channels_last=cfg.channels_last, num_workers=cfg.num_workers)
    from esg_lib.metrics import classification_metrics

    res = classification_metrics(out["labels"], out["preds"], len(bundle.class_names))
    res["loss"] = float(out["loss"])
    return res


def _is_better(record: dict[str, Any], best: dict[str, Any], metric: str) -> bool:
    value = record.get(metric)
    if value is None:  # no validation split: the last epoch is the "best"
        return True
    if best["value"] is None:
        return True
    return value < best["value"] if metric == "val_loss" else value > best["value"]


def _gather_rng(dist: Dist) -> list[dict[str, Any]]:
    """Every rank's RNG state (rank 0 stores them all, so each rank restores its own)."""
    state = rng_state()
    if dist.world == 1:
        return [state]
    states: list[Any] = [None] * dist.world
    torch.distributed.all_gather_object(states, state)
    return states


def _truncate_log(path: Path, last_epoch_index: int) -> None:
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines()
            if ln.strip() and json.loads(ln)["epoch"] <= last_epoch_index + 1]
    path.write_text("".join(ln + "\n" for ln in keep))


def _progress(loader, enabled: bool, desc: str):
    if not enabled:
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)


def _run_progress(enabled: bool, total_steps: int, done_steps: int, desc: str):
    """One bar for the whole run when tqdm.auto draws widgets (a Jupyter kernel with ipywidgets),
    else None (terminals and logs keep a bar and a line per epoch)."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    if not any(c.__module__ == "tqdm.notebook" for c in tqdm.__mro__):
        return None
    return tqdm(total=total_steps, initial=done_steps, desc=desc, unit="step", leave=True)


def _as_list(v: Any) -> list:
    if isinstance(v, torch.Tensor):
        return v.flatten().tolist()
    return list(np.asarray(v, dtype=float).flatten())


def _fmt(v: Any) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"
