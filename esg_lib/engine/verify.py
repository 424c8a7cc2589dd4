"""A reviewer's spot check: retrain committed runs from their recorded configuration and compare.

``esg verify --profile cpu --sample 1`` picks committed run records (``results/<profile>/runs/*.json``),
cheapest first unless ``--order random`` (seeded by ``--seed``), retrains each one into a scratch
folder from the configuration its record implies, and prints one verdict line per run:

* **reproduced exactly** — same machine (processor model and core count, as the record's hardware
  text names it), same thread count, eager PyTorch: CPU training here is deterministic
  (``torch.use_deterministic_algorithms``, seeded data order and initialisation), so the run id and
  every test metric must come back bit for bit. Anything else on the same hardware is a failure
  (exit code 1). Records made before 2026-11-29 name only the architecture (``CPU x86_64``), which
  every x86 machine matches, not the processor model: for them a difference is reported, never
  called a failure (an AMD EPYC and an Intel Xeon run the same float code in different orders).
* **differs by x points (y seed-stds)** — the record came from other hardware (another CPU, another
  thread count, a GPU): floating-point sums are ordered differently there, so only closeness can be
  judged; the difference in test accuracy is given in points and in units of the standard deviation
  across the row's seeds (how much the result moves from one seed to the next).

The configuration is rebuilt from the record's profile, dataset, protocol, model and seed, plus the
stage overrides of the profile's plan (:mod:`esg_lib.engine.plan`) whose config variant matches the
record's; a record whose recipe the code no longer produces is reported as not rebuildable. A
compiled model (``torch.compile``) computes in another order than eager, so only an eager rerun of
an eager record is held to bit-identity; the spot check always retrains eagerly.
"""
from __future__ import annotations

import math
import random
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from esg_lib import store
from esg_lib.errors import UserError

from . import provenance as P
from . import runs as R
from .artifacts import FEATURE_SEEDS, export_rerun
from .config import ProfileRef, TrainConfig, build_config, get_profile, profile_name
from .plan import expected_variant, plan

COMPARED = ("acc", "precision", "recall", "f1", "loss")


@dataclass
class Verdict:
    """The outcome of retraining one committed run."""

    record: str                       # the record's file name
    run_id_matches: bool
    same_hardware: bool
    differences: dict[str, float] = field(default_factory=dict)   # metric → rerun − record
    seed_std: float | None = None     # std of the record's row accuracy across its seeds
    seconds: float = 0.0
    note: str = ""
    cpu_unknown: bool = False         # the record names no CPU model: same machine or not is unknown
    run_dir: Path | None = None       # the rerun's folder
    hardware: str | None = None       # the rerun's hardware, as a record would name it

    @property
    def exact(self) -> bool:
        return self.run_id_matches and all(d == 0.0 for d in self.differences.values())

    @property
    def failed(self) -> bool:
        """A record that cannot be rebuilt, or a same-hardware rerun that is not bit-identical (only
        those are expected to be)."""
        return bool(self.note) or (self.same_hardware and not self.exact)

    def line(self) -> str:
        took = f" [{self.seconds / 60:.1f} min]"
        if self.note:
            return f"{self.record}: {self.note}{took}"
        if self.exact:
            return f"{self.record}: reproduced exactly (run id and test metrics){took}"
        points = 100.0 * self.differences.get("acc", math.nan)
        stds = (f"{abs(points) / (100.0 * self.seed_std):.2f} seed-stds" if self.seed_std
                else "seed-std unknown")
        ident = "" if self.run_id_matches else "; run id differs"
        where = ("on the same hardware: NOT REPRODUCED" if self.same_hardware else
                 "the record names no CPU model (made before they were recorded), so it may come from another "
                 "processor: not a failure" if self.cpu_unknown else "other hardware")
        return f"{self.record}: differs by {points:+.2f} points ({stds}){ident} — {where}{took}"


def record_threads(hardware: str | None) -> int | None:
    """The thread count in a record's hardware text (``"CPU x86_64, 2 cores, 1 threads"`` → 1)."""
    m = re.search(r", (\d+) threads$", hardware or "")
    return int(m.group(1)) if m else None


def this_machine_name() -> str:
    """This machine in the form of a record's :func:`~.runs.machine_name` (CPU only: a spot check
    retrains on the CPU)."""
    return P.machine_name(P.hardware_text({"hardware": P.hardware(), "threads": 1, "device": "cpu"}))


def load_records(profile: ProfileRef, results: str | Path = "results") -> list[tuple[Path, dict[str, Any]]]:
    """The profile's usable records beside their files (:func:`esg_lib.store.load_record_files`: an
    unusable one is named in a warning and never retrained)."""
    return store.load_record_files(profile, results)


def choose(records: Sequence[tuple[Path, Mapping[str, Any]]], sample: int, seed: int = 0,
           order: str = "cheapest") -> list[tuple[Path, Mapping[str, Any]]]:
    """``sample`` records: the cheapest to retrain first (recorded training seconds of CPU records,
    then GPU records; ties broken by a seeded shuffle), or a seeded random sample."""
    rng = random.Random(seed)
    pool = list(records)
    rng.shuffle(pool)
    if order == "random":
        return pool[:sample]
    if order != "cheapest":
        raise UserError(f"--order must be cheapest or random, got {order!r}")
    # a GPU record's seconds say nothing about its cost on this CPU: those come last
    return sorted(pool, key=lambda pr: (P.machine_kind(pr[1].get("hardware")) != "cpu",
                                        float(pr[1].get("train_seconds") or math.inf)))[:sample]


def config_for_record(rec: Mapping[str, Any], out: str | Path, **runtime: Any) -> TrainConfig:
    """The configuration that produced ``rec``: the profile's, plus the overrides of the plan stage
    whose config variant matches the record's (none for a profile's own rows)."""
    # a record holds the profile's name: resolved here, once for every candidate below
    prof, model = get_profile(rec["profile"]), rec["model"]
    dataset, protocol = rec["dataset"], rec.get("protocol", "leak-free")
    candidates: list[Mapping[str, Any]] = [{}]
    try:
        candidates += [s.overrides for s in plan(prof)
                       if s.overrides and model in s.models and s.dataset == dataset and s.protocol == protocol]
    except UserError:
        pass
    for overrides in candidates:
        if expected_variant(prof, model, dataset, protocol, overrides) == rec.get("variant"):
            return build_config(prof, model=model, seed=int(rec["seed"]), dataset=dataset,
                                protocol=protocol, out=str(out), **dict(overrides), **runtime)
    now = expected_variant(prof, model, dataset, protocol)
    raise UserError(f"the {prof.name} profile no longer trains {model} with the recipe of this record "
                    f"(variant {rec.get('variant')}, now {now}): it cannot be rebuilt from its config")


def seed_std(rec: Mapping[str, Any], records: Sequence[tuple[Path, Mapping[str, Any]]]) -> float | None:
    """Standard deviation of test accuracy across the seeds of the record's table row."""
    same = [r["acc"] for _, r in records
            if (r["dataset"], r.get("protocol"), r["model"], r.get("variant"))
            == (rec["dataset"], rec.get("protocol"), rec["model"], rec.get("variant"))]
    return statistics.stdev(same) if len(same) > 1 else None


def verify_record(path: Path, rec: Mapping[str, Any], records: Sequence[tuple[Path, Mapping[str, Any]]],
                  out: str | Path, threads: int | None = None, reuse: bool = False) -> Verdict:
    """Retrain one record eagerly on the CPU and compare it (see the module docstring). ``reuse``: a
    finished rerun of the same run id already under ``out`` (say, from ``esg train --out``) is compared
    as it is instead of being trained again; an unfinished or missing one is trained."""
    from .train import fit

    t0 = time.time()
    recorded_threads = record_threads(rec.get("hardware"))
    use = threads or recorded_threads or 1
    hw = rec.get("hardware")
    same = (P.machine_kind(hw) == "cpu" and P.names_cpu_model(hw)
            and P.machine_name(hw) == this_machine_name() and use == recorded_threads)
    cfg = config_for_record(rec, out, device="cpu", threads=use, progress=False)
    res = fit(cfg, force=not reuse)
    test = res.metrics.get("test", {})
    diffs = {k: float(test[k]) - float(rec[k]) for k in COMPARED if test.get(k) is not None and rec.get(k) is not None}
    meta = R.read_json(Path(res.run_dir) / "meta.json") or {}
    return Verdict(path.name, res.run_id == rec.get("run_id"), same, diffs, seed_std(rec, records),
                   time.time() - t0, cpu_unknown=P.machine_kind(hw) == "cpu" and not P.names_cpu_model(hw),
                   run_dir=Path(res.run_dir), hardware=P.hardware_text(meta) if meta else None)


def keep_rerun(verdict: Verdict, rec: Mapping[str, Any], results: str | Path) -> Path | None:
    """Commit-ready light files of a verified rerun (``esg verify --keep``): under
    ``results/<profile>/reruns/`` (:func:`~.artifacts.export_rerun`), with the verdict in ``rerun.json``.
    Only a rerun of the record's own run id is kept: anything else is another experiment. The
    checkpoint is not kept, so a rerun of a seed whose features are kept (Fig. 12 and Fig. 13 show
    that seed) first gets its Grad-CAM maps written beside the checkpoint
    (:func:`~.gradcam.write_run_cams`), and those are kept."""
    if verdict.note or not verdict.run_id_matches or verdict.run_dir is None:
        return None
    if rec.get("seed") in FEATURE_SEEDS and (verdict.run_dir / "best.pt").is_file():
        # grad-cam is loaded only here: the rest of the spot check does without it
        from .gradcam import write_run_cams
        from .train import prepare_bundle

        write_run_cams(verdict.run_dir, prepare_bundle(config_for_record(rec, verdict.run_dir.parents[3], device="cpu")))
    about = {"record": verdict.record, "run_id": rec.get("run_id"), "record_hardware": rec.get("hardware"),
             "hardware": verdict.hardware, "same_hardware": bool(verdict.same_hardware), "exact": verdict.exact,
             "differences": verdict.differences, "seed_std": verdict.seed_std,
             "verdict": verdict.line().rsplit(" [", 1)[0]}   # without the minutes it took
    return export_rerun(verdict.run_dir, store.profile_dir(results, rec["profile"]), rec.get("seed"), about)


def run_verify(profile: ProfileRef, sample: int = 1, seed: int = 0, order: str = "cheapest",
               results: str | Path = "results", out: str | Path = "runs/verify",
               threads: int | None = None, match: Sequence[str] = (), reuse: bool = False,
               keep: bool = False) -> list[Verdict]:
    """Spot-check ``sample`` committed runs of ``profile``; ``match`` keeps records whose file
    name contains every given text (e.g. ``x-sdd``, ``resnet18``). ``keep``: each rerun's light
    files go to ``results/<profile>/reruns/`` (:func:`keep_rerun`)."""
    name = profile_name(profile)      # each record names its own profile: config_for_record resolves it
    records = load_records(profile, results)
    pool = [(p, r) for p, r in records if all(t in p.name for t in match)]
    if not pool:
        raise UserError(f"no committed {name} records match {' '.join(match) or '(any)'} "
                        f"in {store.records_dir(results, name)}")
    verdicts = []
    for path, rec in choose(pool, sample, seed, order):
        print(f"retraining {path.name} (recorded: {rec.get('hardware')}, "
              f"{float(rec.get('train_seconds') or 0) / 60:.0f} min of training)", flush=True)
        try:
            verdict = verify_record(path, rec, records, out, threads, reuse)
        except UserError as exc:
            verdict = Verdict(path.name, False, False, note=f"cannot rebuild: {exc}")
        print(verdict.line(), flush=True)
        kept = keep_rerun(verdict, rec, results) if keep else None
        if kept:
            print(f"  kept its light files in {kept}", flush=True)
        verdicts.append(verdict)
    return verdicts
