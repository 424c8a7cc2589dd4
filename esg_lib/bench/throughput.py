"""Model throughput benchmark (``esg benchmark --models ...``).

Method:

* **One worker process per (model, image size, batch size)**, started with the same thread count
  and kept alive for the whole run, so each model's peak memory is its own: the peak resident set
  (Linux ``VmHWM``, reset after ``import torch, timm, esg_lib``; elsewhere ``ru_maxrss``) above the
  resident set before the model was built, so weights, optimizer state, activations and
  temporaries count; on CUDA ``torch.cuda.max_memory_allocated``. No model's allocations or
  compiled state leak into another's numbers.
* **Interleaved, repeated**: the parent asks the workers in turn, one at a time (the others wait
  blocked on a pipe), for one timed inference measurement and one timed training-step measurement;
  ``repeats`` such rounds (after ``warmup`` untimed steps of each kind) give a median and a spread
  for every model under the same drift of machine load. Ratios between two models are taken per
  round (paired) and then the median.
* **Inference**: ``model.eval()`` under ``torch.inference_mode()``. **Training step**: ``train()``,
  forward, cross-entropy, backward, ``AdamW.step()`` and ``zero_grad(set_to_none=True)``, on a fixed
  random batch (the data pipeline is not measured here: see the training loop's data-wait time).
* **Work**: multiply-accumulates counted by ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per
  MAC for convolutions and matrix products; elementwise work, norms and attention gates not counted,
  as in timm's and the paper's "GFLOPs", which are GMACs): forward only for ``gflops`` (the paper's
  column), forward + backward for the training step, with convolution backward counted per group
  (:func:`esg_lib.models.zoo.flop_counter`; torch's formula overcounts a depthwise backward C x),
  which makes a training step about 3 x the forward. Achieved GFLOP/s = 2 x MACs per image x img/s.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Sequence

from esg_lib.markdown import markdown_rows

__all__ = ["run_benchmark", "ratios", "speedups", "variant_label", "targets", "format_table", "format_speedups",
           "PAPER_RATIO", "PAPER_FPS", "EFFICIENCY_TARGET", "SPEEDUP_TARGET"]

PAPER_FPS = {"esg_convnext": 6.0, "convnextv2": 42.0}  # Zhang et al. 2025, RTX 4090, 224 px
PAPER_RATIO = PAPER_FPS["esg_convnext"] / PAPER_FPS["convnextv2"]  # 0.143
EFFICIENCY_TARGET = 0.7  # ESG achieved GFLOP/s >= 0.7 x ResNet18's, same run (issue 7)
SPEEDUP_TARGET = 1.5  # ESG training step, a faster variant vs plain eager in the same run (issue 22)


# ------------------------------------------------------------------------------------- worker
def _proc_status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets the high-water mark (VmHWM) to the current RSS, so a
    peak measured afterwards is not hidden by a larger transient of ``import torch``."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _memory_probe() -> Callable[[], float | None]:
    """A function returning the process's peak RSS in MB above the RSS at the time of this call:
    VmHWM after a reset where Linux allows it, else ``resource.getrusage``'s ``ru_maxrss`` above its
    own value now (a lower bound when an earlier transient was larger)."""
    if _reset_peak_rss() and _proc_status_mb("VmHWM") is not None:
        base = _proc_status_mb("VmRSS") or 0.0
        return lambda: (_proc_status_mb("VmHWM") or 0.0) - base
    try:
        import resource
    except ImportError:  # Windows
        return lambda: None

    def maxrss() -> float:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 1024 / 1024 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux

    base = maxrss()
    return lambda: maxrss() - base


def _worker(cfg: dict[str, Any]) -> None:
    """Runs in the child process: builds one model, answers commands from stdin with JSON lines."""
    import torch

    torch.set_num_threads(cfg["threads"])
    if cfg.get("malloc") == "tuned":
        from esg_lib.engine.runtime import tune_malloc
        tune_malloc()
    import timm

    from esg_lib.models.zoo import count_gmacs, count_parameters, count_training_gmacs

    device = torch.device(cfg["device"])
    cuda = device.type == "cuda"
    send = _sender()
    peak_rss = _memory_probe()  # baseline: after the imports, before the model exists

    torch.manual_seed(0)
    model = timm.create_model(cfg["model"], num_classes=cfg["num_classes"]).to(device)
    b, s = cfg["batch_size"], cfg["img_size"]
    x = torch.randn(b, 3, s, s, device=device)
    y = torch.randint(0, cfg["num_classes"], (b,), device=device)
    if cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    fwd = model
    if cfg["compile"]:
        from esg_lib.bench.compiled import compile_model
        fwd = compile_model(model, device)

    def infer() -> None:
        model.eval()
        with torch.inference_mode():
            fwd(x)

    def train() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(fwd(x), y)
        loss.backward()
        optimizer.step()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    steps = {"infer": infer, "train": train}
    peak: dict[str, float | None] = {}
    compile_s: dict[str, float] = {}
    for mode in cfg["modes"]:  # inference first: its high-water mark is not hidden by training's
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(max(cfg["warmup"], 1)):
            steps[mode]()
        sync()
        compile_s[mode] = time.perf_counter() - t0
        if cuda:
            peak[mode] = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak[mode] = peak_rss()

    # Work per image: forward MACs (paper's "GFLOPs") and training-step MACs (forward + backward).
    # The training count honours groups in convolution backward (torch's own formula does not).
    gmacs_fwd = count_gmacs(timm.create_model(cfg["model"], num_classes=cfg["num_classes"]), s)
    gmacs_train = count_training_gmacs(timm.create_model(cfg["model"], num_classes=cfg["num_classes"]), s)
    send({"ready": True, "params_m": count_parameters(model) / 1e6, "gmacs_fwd": gmacs_fwd,
          "gmacs_train": gmacs_train, "peak_mem_mb": peak, "first_steps_s": compile_s,
          "threads": torch.get_num_threads()})

    _serve(steps, sync, send)


def _serve(steps: dict[str, Callable[[], None]], sync: Callable[[], None],
           send: Callable[[dict[str, Any]], None]) -> None:
    """The worker's command loop: each ``time`` command runs whole steps of one mode for at least
    ``min_time`` seconds and answers the mean seconds per step; ``quit`` (or end of input) ends it."""
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        fn = steps[cmd["mode"]]
        min_time = cmd.get("min_time", 0.0)
        sync()
        t0 = time.perf_counter()
        iters, elapsed = 0, 0.0
        while iters == 0 or elapsed < min_time:  # whole steps until min_time has passed
            fn()
            sync()
            iters += 1
            elapsed = time.perf_counter() - t0
        send({"seconds": elapsed / iters, "iters": iters})


def _sender() -> Callable[[dict[str, Any]], None]:
    out = sys.stdout

    def send(obj: dict[str, Any]) -> None:
        out.write("@@" + json.dumps(obj) + "\n")
        out.flush()

    return send


class _Worker:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        env = dict(os.environ, OMP_NUM_THREADS=str(cfg["threads"]), PYTHONUNBUFFERED="1")
        self.stderr = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: warnings can't block it
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys, json; from esg_lib.bench.throughput import _worker; "
             "_worker(json.loads(sys.argv[1]))", json.dumps(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env)
        self.info: dict[str, Any] = {}

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("@@"):
                return json.loads(line[2:])
        self.proc.wait()
        self.stderr.seek(0)
        err = self.stderr.read()
        raise RuntimeError(f"benchmark worker for {self.cfg['model']} died:\n{err[-3000:]}")

    def ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        try:
            if self.proc.poll() is None and self.proc.stdin:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
        self.stderr.close()


# ------------------------------------------------------------------------------------- parent
def run_benchmark(models: Sequence[str], img_sizes: Sequence[int] = (64,), batch_sizes: Sequence[int] = (64,),
                  repeats: int = 3, warmup: int = 1, threads: int | None = None, device: str = "cpu",
                  channels_last: bool = False, compile: bool | str = False, malloc: str = "tuned",
                  num_classes: int = 9, modes: Sequence[str] = ("infer", "train"), min_time: float = 0.5,
                  log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Measure every (model, img_size, batch_size) for inference and/or training; returns records.
    Each measurement runs whole steps until ``min_time`` seconds have passed (at least one).

    ``compile``: False (eager), True (``torch.compile``), or ``"both"``: an eager and a compiled worker
    per combination. ``malloc``: ``"tuned"`` (what training does on a CPU:
    :func:`esg_lib.engine.runtime.tune_malloc`), ``"default"`` (glibc as it comes) or ``"both"``. Every
    variant of a combination runs in its own worker, interleaved in the same rounds, so
    :func:`speedups` pairs each with plain eager per round."""
    modes = [m for m in ("infer", "train") if m in modes]
    import torch

    threads = threads or torch.get_num_threads()
    log = log or (lambda msg: None)
    if malloc not in ("default", "tuned", "both"):
        raise ValueError(f"malloc must be 'default', 'tuned' or 'both', not {malloc!r}")
    compiles = (False, True) if compile == "both" else (bool(compile),)
    mallocs = ("default", "tuned") if malloc == "both" else (malloc,)
    combos = [(m, s, b, c, a) for s in img_sizes for b in batch_sizes for m in models
              for c in compiles for a in mallocs]
    workers: list[_Worker] = []
    try:
        for m, s, b, c, a in combos:  # one at a time: start-up and warm-up are not timed but do compete
            w = _Worker(dict(model=m, img_size=s, batch_size=b, threads=threads, device=device,
                             channels_last=channels_last, compile=c, malloc=a, warmup=warmup,
                             num_classes=num_classes, modes=modes))
            w.info = w.read()
            log(f"  {m} ({variant_label(dict(compile=c, malloc=a))}) @ {s} px, batch {b}: ready ({w.info['params_m']:.2f} M "
                f"params, {w.info['gmacs_fwd']:.3f} GMACs/img, first steps {w.info['first_steps_s']})")
            workers.append(w)
        times: dict[tuple[int, str], list[float]] = {(i, mode): [] for i in range(len(workers)) for mode in modes}
        for r in range(repeats):
            order = list(range(len(workers)))
            order = order[r % len(order):] + order[: r % len(order)]  # rotate who goes first
            for mode in modes:
                for i in order:
                    reply = workers[i].ask({"cmd": "time", "mode": mode, "min_time": min_time})
                    times[(i, mode)].append(reply["seconds"])
                    time.sleep(0.05)  # let the last worker's OpenMP threads stop spinning
            log(f"  round {r + 1}/{repeats} done")
    finally:
        for w in workers:
            w.close()

    records = []
    for i, (w, (m, s, b, c, a)) in enumerate(zip(workers, combos)):
        for mode in modes:
            secs = times[(i, mode)]
            rates = sorted(b / t for t in secs)
            med = statistics.median(rates)
            gmacs_mode = w.info["gmacs_fwd"] if mode == "infer" else w.info["gmacs_train"]
            records.append({
                "model": m, "img_size": s, "batch_size": b, "mode": mode,
                "img_per_s": med, "img_per_s_min": rates[0], "img_per_s_max": rates[-1],
                "img_per_s_all": [b / t for t in secs],
                "rel_spread": (rates[-1] - rates[0]) / med if med else 0.0,
                "step_ms": statistics.median(secs) * 1e3,
                "gflops": w.info["gmacs_fwd"],
                "gmacs_per_img": gmacs_mode,
                "achieved_gflop_per_s": 2 * gmacs_mode * med,
                "params_m": w.info["params_m"],
                "peak_mem_mb": w.info["peak_mem_mb"][mode],
                "first_steps_s": w.info["first_steps_s"][mode],
                "threads": w.info["threads"], "device": device, "channels_last": channels_last,
                "compile": c, "malloc": a, "repeats": repeats, "min_time_s": min_time,
            })
    return records


def _family(model: str) -> tuple[str, str] | None:
    """('esg_convnext' | 'convnextv2', size) for the two families the paper compares."""
    for fam in ("esg_convnext", "convnextv2"):
        if model.startswith(fam + "_"):
            size = model[len(fam) + 1:]
            if "_" not in size:
                return fam, size
    return None


def _esg_with_partner(records: list[dict[str, Any]], partner: Callable[[str], str]):
    """``(esg_record, partner_record)`` for every ESG-ConvNeXt record whose partner model (named from
    the ESG size, e.g. ``convnextv2_<size>``) was measured at the same size, batch and mode."""
    index = {(r["model"], r["img_size"], r["batch_size"], r["mode"], _variant(r)): r for r in records}
    for r in records:
        fam = _family(r["model"])
        if not fam or fam[0] != "esg_convnext":
            continue
        other = index.get((partner(fam[1]), r["img_size"], r["batch_size"], r["mode"], _variant(r)))
        if other:
            yield r, other


def ratios(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ESG / ConvNeXtV2 throughput ratios of the same size, per mode, image and batch size:
    the median of the per-round (paired) ratios, beside the paper's 6 / 42 FPS."""
    out = []
    for r, other in _esg_with_partner(records, lambda size: f"convnextv2_{size}"):
        paired = [a / b for a, b in zip(r["img_per_s_all"], other["img_per_s_all"])]
        out.append({
            "esg": r["model"], "convnextv2": other["model"], "img_size": r["img_size"],
            "batch_size": r["batch_size"], "mode": r["mode"],
            "throughput_ratio": statistics.median(paired), "ratio_min": min(paired), "ratio_max": max(paired),
            "gmacs_ratio_inverse": other["gflops"] / r["gflops"],
            "paper_ratio": PAPER_RATIO, "paper_note": "6 FPS vs 42 FPS, RTX 4090, 224 px (paper)",
        })
    return out


def _variant(r: dict[str, Any]) -> tuple[bool, str]:
    """How a record's worker ran: (compiled, malloc). Records from before ``malloc`` existed ran glibc as is."""
    return bool(r.get("compile", False)), r.get("malloc", "default")


def variant_label(r: dict[str, Any]) -> str:
    compiled, malloc = _variant(r)
    return ("compiled" if compiled else "eager") + (", tuned malloc" if malloc == "tuned" else "")


def speedups(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each variant's throughput over plain eager of the same model, size, batch and mode, measured in
    the same run: the median of the per-round (paired) ratios, with their min and max.

    The base is eager with glibc's default malloc where the run has it (``--malloc both``), else eager
    with the same malloc as the variant (``--compile both`` alone)."""
    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return r["model"], r["img_size"], r["batch_size"], r["mode"]

    eager = {(key(r), _variant(r)[1]): r for r in records if not r.get("compile")}
    out = []
    for r in records:
        base = eager.get((key(r), "default")) or eager.get((key(r), _variant(r)[1]))
        if base is None or base is r:
            continue
        paired = [a / b for a, b in zip(r["img_per_s_all"], base["img_per_s_all"])]
        out.append({"model": r["model"], "img_size": r["img_size"], "batch_size": r["batch_size"],
                    "mode": r["mode"], "variant": variant_label(r), "base": variant_label(base),
                    "base_img_per_s": base["img_per_s"], "img_per_s": r["img_per_s"],
                    "speedup": statistics.median(paired), "speedup_min": min(paired), "speedup_max": max(paired),
                    "first_steps_s": r["first_steps_s"]})
    return out


def targets(records: list[dict[str, Any]], module_rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The issue's checkable targets, each with ``met`` (True/False/None when not measurable here)."""
    out = []
    for r, ref in _esg_with_partner(records, lambda size: "resnet18"):
        rel = r["achieved_gflop_per_s"] / ref["achieved_gflop_per_s"]
        both = "" if _variant(r) == (False, "default") else f" (both {variant_label(r)})"
        out.append({"target": f"dense-work efficiency ({r['mode']}): {r['model']} GFLOP/s >= "
                              f"{EFFICIENCY_TARGET} x resnet18{both} ({r['img_size']} px, batch {r['batch_size']})",
                    "value": rel, "threshold": EFFICIENCY_TARGET, "met": rel >= EFFICIENCY_TARGET})
    for q in speedups(records):
        if _family(q["model"]) and _family(q["model"])[0] == "esg_convnext" and q["mode"] == "train":
            out.append({"target": f"{q['model']} training step {q['variant']} >= {SPEEDUP_TARGET} x {q['base']}, "
                                  f"same run ({q['img_size']} px, batch {q['batch_size']})",
                        "value": q["speedup"], "threshold": SPEEDUP_TARGET,
                        "met": q["speedup"] >= SPEEDUP_TARGET})
    for q in ratios(records):
        out.append({"target": f"ESG/ConvNeXtV2 {q['mode']} throughput ratio reported beside the paper's "
                              f"{PAPER_RATIO:.2f} ({q['img_size']} px)",
                    "value": q["throughput_ratio"], "threshold": None, "met": True})
    for row in module_rows or []:
        out.append({"target": f"{row['module']} (stage {row['stage']}, {row['mode']}) >= 1.5x its literal reference",
                    "value": row["speedup"], "threshold": 1.5, "met": row["met"]})
    return out


def format_table(records: list[dict[str, Any]]) -> str:
    header = ["model", "px", "batch", "mode", "img/s (median)", "min-max", "step ms",
              "GMACs/img fwd (paper 'GFLOPs')", "achieved GFLOP/s", "params (M)", "peak mem (MB)"]
    cells = [[f"`{r['model']}` {variant_label(r)}", r["img_size"], r["batch_size"],
              r["mode"], f"{r['img_per_s']:.1f}", f"{r['img_per_s_min']:.1f}-{r['img_per_s_max']:.1f}",
              f"{r['step_ms']:.0f}", f"{r['gflops']:.3f}", f"{r['achieved_gflop_per_s']:.1f}", f"{r['params_m']:.2f}",
              "n/a" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f}"] for r in records]
    return markdown_rows(header, cells, align="lrrlrrrrrrr")


def format_speedups(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    header = ["model", "px", "batch", "mode", "variant", "base", "base img/s", "variant img/s",
              "speed-up (median of paired rounds)", "min-max", "compile + first steps (s)"]
    cells = [[f"`{q['model']}`", q["img_size"], q["batch_size"], q["mode"], q["variant"], q["base"],
              f"{q['base_img_per_s']:.1f}", f"{q['img_per_s']:.1f}", f"{q['speedup']:.2f}",
              f"{q['speedup_min']:.2f}-{q['speedup_max']:.2f}", f"{q['first_steps_s']:.0f}"] for q in rows]
    return markdown_rows(header, cells, align="lrrlllrrrrr")


def format_ratios(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    header = ["ESG / ConvNeXtV2", "px", "batch", "mode", "throughput ratio (median of paired rounds)", "min-max",
              "1 / GMACs ratio", "paper (6 / 42 FPS)"]
    cells = [[f"`{q['esg']}` / `{q['convnextv2']}`", q["img_size"], q["batch_size"], q["mode"],
              f"{q['throughput_ratio']:.3f}", f"{q['ratio_min']:.3f}-{q['ratio_max']:.3f}",
              f"{q['gmacs_ratio_inverse']:.3f}", f"{q['paper_ratio']:.3f}"] for q in rows]
    return markdown_rows(header, cells, align="lrrlrrrr")


def format_targets(rows: list[dict[str, Any]]) -> str:
    lines = []
    for t in rows:
        mark = "MET " if t["met"] else ("MISSED" if t["met"] is False else "n/a ")
        val = f"{t['value']:.2f}" if isinstance(t["value"], float) else str(t["value"])
        lines.append(f"  [{mark}] {t['target']}: {val}")
    return "\n".join(lines)
