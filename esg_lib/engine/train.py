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
  process uses ``threads`` (default: the cores it may run on / processes) intra-op threads.
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
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from timm.data import Mixup
from timm.data.random_erasing import RandomErasing
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2, param_groups_weight_decay
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from torch import nn

from esg_lib.data import prepare_data
from esg_lib.data.augment import TRANSFORM_IDENTITY_KEYS, training_transform, training_transform_identity
from esg_lib.errors import UserError
from esg_lib.metrics import classification_metrics

from . import evaluate as E
from . import provenance as P
from . import runs as R
from .compile import compile_model
from .config import TrainConfig, validate
from .models import check_input_size, model_for_config, no_weight_decay_names, spec_for_config
from .runtime import (Dist, gather_rng, load_checkpoint, reduce_values, resolve_device, save_checkpoint,
                      seed_everything, set_rng_state, setup_distributed, setup_threads,
                      tune_malloc, atomic_write)

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


# ----------------------------------------------------------------------------------- data
def prepare_bundle(cfg: TrainConfig):
    """``esg_lib.data.prepare_data`` of the config's data part (:attr:`TrainConfig.data`)."""
    return prepare_data(cfg.data)


# A bundle prepared with other values of these would be mislabelled by the run's config. The seed
# is not among them: the same split with another initialisation seed is a legitimate experiment
# (the run identity records the bundle's own split seed).
_BUNDLE_FIELDS = ("img_size", "protocol", "val_fraction", "test_fraction", "max_images", "augment_copies")


def matching_bundle(cfg: TrainConfig, bundle: Any = None):
    """``bundle`` made to fit ``cfg``: prepared when None; its online augmentation, online crop and
    RandAugment switched to the config's (models of one seed share the decoded split even when their
    tuned recipes differ); a bundle prepared for another split, size or protocol is refused rather
    than silently used."""
    if bundle is None:
        return prepare_bundle(cfg)
    ident = bundle.identity
    wrong = [f for f in _BUNDLE_FIELDS if f in ident and ident[f] != getattr(cfg, f)]
    if wrong:
        raise ValueError(f"the data bundle does not match the config ({', '.join(wrong)} differ)")
    want = training_transform_identity(cfg.online_augment, cfg.online_crop, cfg.rand_augment)
    have = {k: ident[k] for k in TRANSFORM_IDENTITY_KEYS if k in ident}
    if {k: v for k, v in have.items() if v} == {k: v for k, v in want.items() if v}:
        return bundle
    train = copy.copy(bundle.train)
    train.transform = training_transform(cfg.online_augment, cfg.img_size, cfg.online_crop, cfg.rand_augment)
    identity = {**{k: v for k, v in ident.items() if k not in TRANSFORM_IDENTITY_KEYS}, **want}
    return dataclasses.replace(bundle, train=train, identity=identity)


def planned_run_dir(cfg: TrainConfig, bundle: Any) -> Path:
    """The folder :func:`fit` would use for ``cfg`` on ``bundle``, without building the model."""
    bundle = matching_bundle(cfg, bundle)
    spec = spec_for_config(cfg)
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
    """Cross-entropy; with mixup/cutmix the targets are soft (timm's ``SoftTargetCrossEntropy``, the
    label smoothing then being folded into the mixed targets by ``Mixup``)."""
    if cfg.mixup_alpha or cfg.cutmix_alpha:
        return SoftTargetCrossEntropy()
    return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


def build_batch_augmentation(cfg: TrainConfig, num_classes: int, device: torch.device):
    """``(mixup, erasing)``: timm's ``Mixup`` (mixup and/or cutmix, switching per batch when both are on)
    and ``RandomErasing`` (per image, random-normal pixels, on the normalised batch); None where off.
    Both draw from the numpy and Python RNGs, which ``last.pt`` saves, so a resumed run stays exact."""
    mixup = None
    if cfg.mixup_alpha or cfg.cutmix_alpha:
        mixup = Mixup(mixup_alpha=cfg.mixup_alpha, cutmix_alpha=cfg.cutmix_alpha,
                      label_smoothing=cfg.label_smoothing, num_classes=num_classes)
    erasing = (RandomErasing(probability=cfg.random_erasing, mode="pixel", device=device.type)
               if cfg.random_erasing else None)
    return mixup, erasing


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups_weight_decay(model, cfg.weight_decay,
                                       no_weight_decay_list=no_weight_decay_names(model))
    return create_optimizer_v2(groups, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    sched, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=cfg.epochs,
                                   warmup_epochs=cfg.warmup_epochs, warmup_lr=cfg.warmup_lr,
                                   min_lr=cfg.min_lr, step_on_epochs=False,
                                   updates_per_epoch=steps_per_epoch)
    return sched


# ----------------------------------------------------------------------------------- fit
def fit(config: TrainConfig, bundle: Any = None, force: bool = False,
        on_epoch: Callable[[dict[str, Any]], None] | None = None) -> FitResult:
    """Train (or resume, or reuse) one run and score it on the test split.

    ``bundle`` is a prepared :class:`esg_lib.data.DataBundle` (prepared from the config when
    omitted). A finished run with the same identity is reused unless ``force``; an unfinished one
    resumes from its ``last.pt``. ``on_epoch`` gets each epoch's log record (a resumed run's logged
    epochs first) after its checkpoint is written, so an exception it raises (a pruned search trial,
    :mod:`.search`) stops the run with its state saved.
    """
    cfg = config
    validate(cfg)
    dist = setup_distributed(cfg.device)
    try:
        return _fit(cfg, bundle, force, dist, on_epoch)
    finally:
        if dist.initialized_here:
            torch.distributed.destroy_process_group()


def _fit(cfg: TrainConfig, bundle: Any, force: bool, dist: Dist,
         on_epoch: Callable[[dict[str, Any]], None] | None = None) -> FitResult:
    t_start = time.time()
    device = resolve_device(cfg.device, dist)
    threads = setup_threads(cfg.threads, dist)
    if device.type == "cpu" and cfg.tune_malloc:
        tune_malloc()
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
    if reduce_values([1.0 if busy else 0.0], dist, device)[0] > 0:   # every rank stops, not only rank 0
        raise R.RunBusy(busy or f"{folder}: rank 0 could not take the run's lock")
    try:
        # under the run's lock, so the finished/diverged check sees what an earlier holder wrote
        done = _earlier_outcome(folder, run_id, force, dist, cfg.score_test)
        if done is not None:
            return done
        trainer = Trainer(cfg, bundle, model, spec, RunPlace(folder, run_id, payload), dist, device, threads,
                          t_start, fresh=force)
        trainer.on_epoch = on_epoch
        return trainer.run()
    finally:
        lock.release()


def _earlier_outcome(folder: Path, run_id: str, force: bool, dist: Dist,
                     score_test: bool = True) -> FitResult | None:
    """A finished run is reused; a diverged one stops again at once (training is deterministic, it
    would diverge again); ``force`` retrains both. A run finished without its test score (``score_test``
    off) is not reused by a config that wants one: it resumes from its ``last.pt`` straight to scoring
    (or, where ``keep_last`` was off and that file is gone, trains again from the start, deterministically)."""
    previous = R.read_json(folder / "metrics.json") or {}
    unscored = previous.get("test") is None and score_test
    if previous.get("status") == "done" and not force and not unscored:
        if dist.main:
            print(f"reusing finished run {folder}")
        return FitResult(folder, run_id, "reused", previous)
    if previous.get("status") == "diverged" and not force:
        raise TrainingDiverged(f"{previous.get('message', 'diverged earlier')} [{folder}; --force retrains it]")
    return None


@dataclass(frozen=True)
class RunPlace:
    """Where a run lives in the run store: its folder, id and the identity payload hashed into it."""
    folder: Path
    run_id: str
    identity: dict[str, Any]


class Trainer:
    """One run's training, as state and steps: :meth:`resume`, :meth:`train_epoch`, :meth:`validate`,
    :meth:`checkpoint` and :meth:`finish`, driven by :meth:`run`.

    Everything :func:`fit` needs across epochs lives on the object (model, optimiser, scheduler,
    scaler, step counter, best epoch, seconds trained), so ``last.pt`` is exactly :meth:`_state` plus
    the optimiser's, scheduler's and RNG states, and a resumed trainer continues bit-identically.
    The order of everything that draws random numbers (model init in :func:`_fit`, then the loader's
    sampler) is the one the committed runs were trained with: run identities and results depend on it.
    """

    def __init__(self, cfg: TrainConfig, bundle: Any, model: nn.Module, spec: Any, place: RunPlace,
                 dist: Dist, device: torch.device, threads: int, t_start: float, fresh: bool = False) -> None:
        self.cfg, self.bundle, self.model, self.spec, self.place = cfg, bundle, model, spec, place
        self.dist, self.device, self.threads, self.t_start = dist, device, threads, t_start
        self.folder = place.folder
        self.last_path, self.best_path = self.folder / "last.pt", self.folder / "best.pt"
        self.say = print if dist.main else (lambda *a, **k: None)
        if dist.main:
            if fresh and self.folder.exists():
                shutil.rmtree(self.folder)
            self.folder.mkdir(parents=True, exist_ok=True)
        dist.barrier()

        model.to(device)
        self.use_amp = cfg.amp and device.type == "cuda"
        if device.type == "cuda" and cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        self.loader, self.sampler = train_loader(bundle.train, cfg, dist)
        self.steps_per_epoch = len(self.loader)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.optimizer = build_optimizer(model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.criterion = build_criterion(cfg)
        self.mixup, self.erasing = build_batch_augmentation(cfg, len(bundle.class_names), device)
        # the EMA copy is made before any resume, from the freshly initialised weights (resume loads it)
        self.ema = ModelEmaV3(model, decay=cfg.ema_decay, device=device) if cfg.ema_decay else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and not torch.cuda.is_bf16_supported())
        self.n_params = sum(p.numel() for p in model.parameters())
        self.start_epoch, self.global_step, self.train_seconds = 0, 0, 0.0
        self.best: dict[str, Any] = {"epoch": -1, "value": None, "metrics": None}
        self.run_bar: Any = None
        self.meta_static: dict[str, Any] = {}
        self.common: dict[str, Any] = {}
        self.train_model: nn.Module = model
        self.on_epoch: Callable[[dict[str, Any]], None] | None = None
        self.last_record: dict[str, Any] = {}

    # ------------------------------------------------------------------------------ steps
    def run(self) -> FitResult:
        """Resume if a ``last.pt`` exists, train the remaining epochs, then score the best weights."""
        self.resume()
        self._write_run_files()
        self.train_model = self._wrapped_model()
        if self.on_epoch is not None and self.start_epoch and (self.folder / "log.jsonl").is_file():
            for line in (self.folder / "log.jsonl").read_text().splitlines():
                if line.strip():
                    self.on_epoch(json.loads(line))
        for epoch in range(self.start_epoch, self.cfg.epochs):
            if self.global_step >= self.total_steps:
                break
            record = self.train_epoch(epoch)
            record.update(self.validate())
            improved = self._record_epoch(epoch, record)
            self.checkpoint(epoch, improved)
            if self.on_epoch is not None:
                self.on_epoch(dict(self.last_record))
        if self.run_bar is not None:
            self.run_bar.close()
        metrics = self.finish() if self.dist.main else {}
        self.dist.barrier()
        if not self.dist.main:
            metrics = R.read_json(self.folder / "metrics.json") or {}
        return FitResult(self.folder, self.place.run_id, "done", metrics)

    def resume(self) -> None:
        """Load ``last.pt`` (model, optimiser, scheduler, scaler, counters, this rank's RNG) if present.
        Without one the run starts from its first epoch, so a log left by an earlier start (a process
        killed after logging an epoch and before its first ``last.pt``, or a ``--force`` retrain) is
        emptied: the log holds each epoch once, of this training only."""
        if not self.last_path.is_file():
            if self.dist.main:
                _truncate_log(self.folder / "log.jsonl", -1)
            return
        ck = load_checkpoint(self.last_path)
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        if self.ema is not None:
            self.ema.module.load_state_dict(ck["ema"])
        self.start_epoch, self.global_step = ck["epoch"] + 1, ck["global_step"]
        self.best, self.train_seconds = ck["best"], ck["train_seconds"]
        rank = self.dist.rank
        set_rng_state(ck["rng"][rank] if rank < len(ck["rng"]) else ck["rng"][0])
        self.say(f"resuming {self.folder} after epoch {ck['epoch'] + 1}/{self.cfg.epochs}")
        if self.dist.main:
            _truncate_log(self.folder / "log.jsonl", ck["epoch"])

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the training loader (or up to the step budget); raises :class:`TrainingDiverged`."""
        cfg, device = self.cfg, self.device
        t0 = time.time()
        self.sampler.set_epoch(epoch)
        self.train_model.train()
        loss_sum = correct = seen = 0.0
        bar = self.loader if self.run_bar is not None else _progress(
            self.loader, cfg.progress and self.dist.main, f"{self.spec.name} ep {epoch + 1}/{cfg.epochs}")
        data_seconds = 0.0  # time spent waiting for the next batch: the input pipeline's share
        t_fetch = time.perf_counter()
        for x, y in bar:
            data_seconds += time.perf_counter() - t_fetch
            x, y = x.to(device, non_blocking=True), torch.as_tensor(y).to(device, non_blocking=True)
            if device.type == "cuda" and cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss, logits = self._step(x, y, epoch)
            loss_sum += float(loss.detach()) * len(y)
            correct += float((logits.argmax(1) == y).sum())
            seen += len(y)
            self._show_step(bar, epoch, loss_sum / seen)
            if STEP_HOOK is not None:
                STEP_HOOK(self.global_step)
            if self.global_step >= self.total_steps:
                break
            t_fetch = time.perf_counter()
        loss_sum, correct, seen = reduce_values([loss_sum, correct, seen], self.dist, device)
        epoch_train_seconds = time.time() - t0
        self.train_seconds += epoch_train_seconds
        return {"epoch": epoch + 1, "step": self.global_step, "lr": self.optimizer.param_groups[0]["lr"],
                "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
                "t0": t0, "train_seconds": self.train_seconds, "data_seconds": data_seconds,
                "data_wait_fraction": data_seconds / max(epoch_train_seconds, 1e-9)}

    def validate(self) -> dict[str, Any]:
        """Loss, accuracy and macro-F1 on the validation split (empty without one)."""
        if len(self.bundle.val) == 0:
            return {"val_loss": None, "val_acc": None, "val_f1": None}
        out = E.predict_dataset(self._scored_model(), self.bundle.val, self.device, self.cfg.eval_batch_size,
                                amp=self.use_amp, channels_last=self.cfg.channels_last,
                                num_workers=self.cfg.num_workers)
        res = classification_metrics(out["labels"], out["preds"], len(self.bundle.class_names))
        return {"val_loss": float(out["loss"]), "val_acc": res.get("acc"), "val_f1": res.get("f1")}

    def checkpoint(self, epoch: int, improved: bool) -> None:
        """``best.pt`` when the epoch improved on validation; ``last.pt`` (resume state) every epoch."""
        if self.dist.main:
            # best.pt holds the weights that were scored (the EMA's when there is one): test and Grad-CAM use them
            state = {"model": self._scored_model().state_dict(), **self._state(epoch)}
            if improved:
                save_checkpoint(self.best_path, state)
            resume = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                      "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                      "rng": gather_rng(self.dist)}
            if self.ema is not None:
                resume["ema"] = self.ema.module.state_dict()
            save_checkpoint(self.last_path, {**state, **resume})
        else:
            gather_rng(self.dist)
        self.dist.barrier()

    def finish(self) -> dict[str, Any]:
        """Score the best weights on test once, measure FPS, write metrics.json and meta.json (rank 0).
        With ``score_test`` off (a search trial, validation only) the test part is never predicted and
        no FPS is measured: ``test`` and ``fps`` are null."""
        cfg, bundle = self.cfg, self.bundle
        summary: dict[str, Any] | None = None
        fps: dict[str, Any] = {"fps": None}
        if cfg.score_test:
            if self.best_path.is_file():
                self.model.load_state_dict(load_checkpoint(self.best_path)["model"])
            out = E.predict_dataset(self.model, bundle.test, self.device, cfg.eval_batch_size,
                                    features=cfg.save_features, amp=self.use_amp,
                                    channels_last=cfg.channels_last, num_workers=cfg.num_workers)
            summary = E.summarize(out, list(bundle.class_names))
            E.write_outputs(self.folder, out, summary, list(bundle.class_names),
                            getattr(bundle.test, "paths", None))
            fps = E.measure_fps(self.model, cfg.img_size, self.device, cfg.fps_batch_size, cfg.fps_warmup,
                                cfg.fps_iters, self.use_amp, cfg.channels_last)
            R.write_json(self.folder / "fps.json", fps)
        wall = time.time() - self.t_start
        metrics = {
            "status": "done", "run_id": self.place.run_id, "model": cfg.model,
            "timm_name": self.common["model_spec"]["name"], "dataset": bundle.dataset_name,
            "profile": cfg.profile, "seed": cfg.seed, "params": self.n_params, "steps": self.global_step,
            "steps_per_epoch": self.steps_per_epoch, "world_size": self.dist.world,
            "split_sizes": {s: len(getattr(bundle, s)) for s in ("train", "val", "test")},
            "best_epoch": self.best["epoch"], "val_best": self.best["metrics"],
            "test": summary and {k: summary[k] for k in ("acc", "precision", "recall", "f1", "loss", "n")},
            "fps": fps["fps"], "fps_protocol": {k: v for k, v in fps.items() if k != "fps"},
            "gmacs": R.run_gmacs(self.folder),
            "train_seconds": self.train_seconds, "wall_seconds": wall,
        }
        R.write_json(self.folder / "metrics.json", metrics)
        R.write_json(self.folder / "meta.json", {**self.meta_static, "status": "done", "finished": R.now_iso(),
                                                 "wall_seconds": wall, "train_seconds": self.train_seconds})
        if not cfg.keep_last:   # only a resume needs it (a finished run is reused; an unscored one retrains)
            self.last_path.unlink(missing_ok=True)
        t = metrics["test"]
        if t is None:
            print(f"validation only: the test part was not scored | {self.folder}")
        else:
            print(f"test: acc {t['acc']:.4f} precision {t['precision']:.4f} recall {t['recall']:.4f} "
                  f"f1 {t['f1']:.4f} | fps {fps['fps']:.1f} | {self.folder}")
        return metrics

    # ------------------------------------------------------------------------------ helpers
    def _step(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch augmentation (random erasing, mixup/cutmix), forward, a finite-loss check on every rank,
        backward, optimiser, scheduler and EMA step. Returns the loss and the logits (whose accuracy
        against ``y`` is the logged training accuracy: under mixup, against the unmixed labels)."""
        target: torch.Tensor = y
        if self.erasing is not None:
            x = self.erasing(x)
        if self.mixup is not None:
            x, target = self.mixup(x, y)
        with E.autocast_context(self.device, self.use_amp):
            logits = self.train_model(x)
            loss = self.criterion(logits.float(), target)
        bad = torch.tensor([0.0 if torch.isfinite(loss) else 1.0], device=self.device)
        if self.dist.world > 1:
            torch.distributed.all_reduce(bad)
        if bad.item() > 0:
            self._diverged(epoch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.global_step += 1
        self.scheduler.step_update(num_updates=self.global_step)
        if self.ema is not None:
            self.ema.update(self.model, step=self.global_step)
        return loss, logits

    def _diverged(self, epoch: int) -> None:
        if self.run_bar is not None:
            self.run_bar.close()
        kept = self.last_path if self.last_path.exists() else "none yet"
        msg = (f"non-finite loss at epoch {epoch + 1}, step {self.global_step + 1}: stopped; "
               f"kept the last good checkpoint ({kept})")
        if self.dist.main:
            R.write_json(self.folder / "meta.json", {**self.meta_static, "status": "diverged", "message": msg,
                                                     "finished": R.now_iso()})
            R.write_json(self.folder / "metrics.json", {"status": "diverged", "message": msg,
                                                        "epoch": epoch + 1, "step": self.global_step + 1})
        raise TrainingDiverged(msg)

    def _record_epoch(self, epoch: int, record: dict[str, Any]) -> bool:
        """Update the best epoch, append the epoch to log.jsonl and report it; True if it improved."""
        t0 = record.pop("t0")
        record = {**{k: record[k] for k in ("epoch", "step", "lr", "train_loss", "train_acc",
                                            "val_loss", "val_acc", "val_f1")},
                  "epoch_seconds": time.time() - t0, "train_seconds": record["train_seconds"],
                  "data_seconds": record["data_seconds"], "data_wait_fraction": record["data_wait_fraction"]}
        improved = _is_better(record, self.best, self.cfg.select_metric)
        if improved:
            self.best = {"epoch": epoch + 1, "value": record.get(self.cfg.select_metric),
                         "metrics": {k: record[k] for k in ("val_loss", "val_acc", "val_f1")}}
        self.last_record = {**record, "best": improved}
        if self.dist.main:
            with open(self.folder / "log.jsonl", "a") as fh:
                fh.write(json.dumps(self.last_record) + "\n")
        if self.run_bar is not None:
            self.run_bar.set_postfix(epoch=f"{epoch + 1}/{self.cfg.epochs}", loss=f"{record['train_loss']:.4f}",
                                     val_acc=_fmt(record["val_acc"]), val_f1=_fmt(record["val_f1"]))
        else:
            self.say(f"epoch {epoch + 1}: train loss {record['train_loss']:.4f} acc {record['train_acc']:.4f}"
                     f" | val loss {_fmt(record['val_loss'])} acc {_fmt(record['val_acc'])} "
                     f"f1 {_fmt(record['val_f1'])}{' *' if improved else ''}")
        return improved

    def _state(self, epoch: int) -> dict[str, Any]:
        """What best.pt and last.pt share besides the weights: counters and the run's description."""
        return {"epoch": epoch, "global_step": self.global_step, "best": self.best,
                "train_seconds": self.train_seconds, **self.common}

    def _write_run_files(self) -> None:
        """config.json and meta.json ("running"), the progress bar and the run's header line."""
        cfg, bundle, device, dist = self.cfg, self.bundle, self.device, self.dist
        self.meta_static = {
            "run_id": self.place.run_id, "seed": cfg.seed, "git": P.git_commit(), "versions": P.package_versions(),
            "hardware": P.hardware(device), "device": str(device), "threads": self.threads,
            "world_size": dist.world, "amp": self.use_amp, "started": R.now_iso(),
            "command": " ".join(sys.argv),
        }
        self.common = {"run_id": self.place.run_id, "identity": self.place.identity, "config": cfg.to_dict(),
                       "model_spec": R.spec_dict(self.spec), "dataset_name": bundle.dataset_name,
                       "class_names": list(bundle.class_names),
                       "display_names": list(getattr(bundle, "display_names", bundle.class_names)),
                       "mean": [float(v) for v in _as_list(bundle.mean)],
                       "std": [float(v) for v in _as_list(bundle.std)],
                       "num_classes": len(bundle.class_names), "params": self.n_params,
                       "color_mode": (bundle.identity.get("decode") or {}).get("color_mode", "RGB")}
        # inside a notebook: one updating bar for the whole run (epochs in its postfix) and, at the end,
        # one summary line; in a terminal or a log: a bar per epoch and a line per epoch
        self.run_bar = _run_progress(cfg.progress and dist.main, self.total_steps, self.global_step,
                                     f"{self.spec.name} seed {cfg.seed}")
        if dist.main:
            R.write_json(self.folder / "config.json", self.common)
            R.write_json(self.folder / "meta.json", {**self.meta_static, "status": "running"})
            if self.run_bar is None:
                print(f"run {self.folder}: {self.spec.name}, {self.n_params / 1e6:.2f}M params, "
                      f"{len(bundle.train)} train images, {self.steps_per_epoch} steps/epoch, {self.total_steps} "
                      f"steps, device {device}, {self.threads} threads, world {dist.world}")

    def _scored_model(self) -> nn.Module:
        """What validation, the best checkpoint and the test score: the EMA weights when there are some."""
        return self.ema.module if self.ema is not None else self.model

    def _wrapped_model(self) -> nn.Module:
        """The module that trains: DDP around the model for several processes, ``torch.compile`` when asked
        (runtime only: same parameters and state-dict keys, the module is wrapped, not changed)."""
        net: nn.Module = self.model
        if self.dist.world > 1:
            net = nn.parallel.DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.cfg.compile:
            net = compile_model(net, self.device)
        return net

    def _show_step(self, bar: Any, epoch: int, mean_loss: float) -> None:
        if self.run_bar is not None:
            self.run_bar.update(1)
            self.run_bar.set_postfix(epoch=f"{epoch + 1}/{self.cfg.epochs}", loss=f"{mean_loss:.4f}", refresh=False)
        elif hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}")


def _is_better(record: dict[str, Any], best: dict[str, Any], metric: str) -> bool:
    value = record.get(metric)
    if value is None:  # no validation split: the last epoch is the "best"
        return True
    if best["value"] is None:
        return True
    return value < best["value"] if metric == "val_loss" else value > best["value"]


def _truncate_log(path: Path, last_epoch_index: int) -> None:
    """Keep the log's epochs up to ``last_epoch_index`` (0-based; the log counts from 1), written
    whole or not at all; -1 keeps none. A line cut short by a kill mid-append is dropped."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines() if _logged_epoch(ln) <= last_epoch_index + 1]
    with atomic_write(path) as fh:
        fh.write("".join(ln + "\n" for ln in keep))


def _logged_epoch(line: str) -> float:
    """A log line's epoch, or infinity for a blank, cut or foreign line (so no truncation keeps it)."""
    try:
        epoch = json.loads(line)["epoch"]
    except (ValueError, KeyError, TypeError):
        return math.inf
    return epoch if isinstance(epoch, int) else math.inf


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
