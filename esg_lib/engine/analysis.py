"""The README's results block: every table rebuilt from committed per-run records, nothing typed.

Input: ``results/<profile>/runs/*.json`` (one small record per finished run, written by
``esg report``) and ``results/<profile>/tuning/runs/*.json`` (validation records of ``esg tune``).
Output: Markdown sections -- progress of the experiment plan, the recipe tuning, our tables beside
the paper's Tables 1-3 (the paper's columns are labelled as the paper's), ESG-ConvNeXt minus each
reference paired per seed, the leak analysis, per-class recall and the per-table details.

Only records trained with the recipe the profile would use now enter the analysis (a stale record
from an older recipe stays in the detail tables, marked with its config variant).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from .config import get_profile


def load_records(profile: str, results: str | Path = "results") -> list[dict[str, Any]]:
    from .runs import read_json

    d = Path(results) / profile / "runs"
    return [r for r in (read_json(p) for p in sorted(d.glob("*.json"))) if r] if d.is_dir() else []


def current_records(profile: str, records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records whose config variant is the one the profile trains now for that row."""
    from .plan import expected_variant

    cache: dict[tuple, str] = {}
    out = []
    for r in records:
        key = (r["model"], r["dataset"], r.get("protocol") or "leak-free")
        if key not in cache:
            try:
                cache[key] = expected_variant(profile, *key)
            except Exception:            # a model or dataset the profile no longer knows
                cache[key] = ""
        if r.get("variant") == cache[key]:
            out.append(r)
    return out


def _select(records: Sequence[Mapping[str, Any]], dataset: str, protocol: str = "leak-free",
            models: Sequence[str] | None = None) -> list[Mapping[str, Any]]:
    return [r for r in records if r["dataset"] == dataset and (r.get("protocol") or "leak-free") == protocol
            and (models is None or r["model"] in models)]


def _ordered(frame, keys: Sequence[str]):
    rank = {k: i for i, k in enumerate(keys)}
    return frame.assign(_o=frame["key"].map(lambda k: rank.get(k, len(rank)))).sort_values(
        ["_o", "seed"], kind="stable").drop(columns="_o")


def _describe(records: Sequence[Mapping[str, Any]]) -> str:
    seeds = sorted({r["seed"] for r in records})
    hardware = sorted({r.get("hardware") or "unknown" for r in records})
    return (f"{len(records)} runs, seeds {' '.join(map(str, seeds))}; hardware: {'; '.join(hardware)}")


def side_by_side_section(profile: str, records, dataset: str, table: int, keys: Sequence[str],
                         title: str, results: str | Path = "results") -> str:
    from esg_lib import experiments as E

    from .fps import load_fps

    recs = _select(records, dataset, "leak-free", keys)
    if not recs:
        return ""
    frame = _ordered(E.records_frame(recs), keys)
    speed = load_fps(profile, results)
    fps = {k: v["fps"] for k, v in (speed or {}).get("models", {}).items()}
    body = E.markdown_table(E.side_by_side(E.summarize(frame), table, fps))
    if speed:
        p = speed["protocol"]
        fps_note = (f"FPS: `esg fps` ({speed['date'][:10]}, {speed['hardware']}; batch {p['batch_size']}, "
                    f"{p['img_size']} px, median of {p['repeats']} × {p['iters']} images)")
    else:
        fps_note = "FPS: measured by each run after training (thread counts may differ; `esg fps` measures all rows alike)"
    return (f"##### {title}\n\nOurs: profile `{profile}`, {dataset}, leak-free split, test part, mean ± std "
            f"over seeds (%); {_describe(recs)}. {fps_note}. GMACs: multiply-adds of one image at the "
            f"profile's size. Columns marked *paper* are the paper's Table {table} "
            f"(224 px, 100 epochs, RTX 4090, its own split), not ours.\n\n{body}\n")


def paired_section(records, dataset: str, keys: Sequence[str]) -> str:
    from esg_lib import experiments as E

    recs = _select(records, dataset, "leak-free", keys)
    frame = E.records_frame(recs)
    if frame.empty or "esg-convnext" not in set(frame["key"]):
        return ""
    parts = []
    for metric in ("acc", "f1"):
        t = E.paired_differences(_ordered(frame, keys), "esg-convnext", metric)
        if t.empty:
            return ""
        parts.append(E.markdown_table(t))
    return (f"##### ESG-ConvNeXt minus each model, paired per seed ({dataset}, leak-free)\n\n"
            "Each seed is its own split, shared by all models, so the split's luck cancels in the "
            "difference. 95 % t interval over the seeds; *within noise* means the interval contains "
            "0 (*untested* with one seed: no interval). Accuracy, then macro F1 (points):\n\n"
            + "\n\n".join(parts) + "\n")


def verdict_section(records, dataset: str = "x-sdd", aim: float = 94.0) -> str:
    """Plain sentences computed from the records: the aim of issue 8 and ESG vs each reference."""
    from esg_lib import experiments as E

    frame = E.records_frame(_select(records, dataset, "leak-free"))
    esg = frame[frame["key"] == "esg-convnext"]
    if esg.empty:
        return ""
    lines = [f"##### Reading ({dataset}, leak-free; computed from the records above)", ""]
    mean, n = esg["acc"].mean(), len(esg)
    lines.append(f"- Aim: ESG-ConvNeXt ≥ {aim:g} % mean test accuracy — "
                 f"{'met' if mean >= aim else 'not met'}: {mean:.1f} % over {n} seed(s).")
    for key, part in frame[frame["key"] != "esg-convnext"].groupby("key", sort=False):
        other = part.set_index("seed")["acc"]
        mine = esg.set_index("seed")["acc"]
        seeds = sorted(set(mine.index) & set(other.index))
        if not seeds:
            continue
        d = E.paired_difference(mine.loc[seeds].to_numpy(), other.loc[seeds].to_numpy())
        if d["n"] < 2:
            word = "one paired seed, no interval yet: not yet tested against noise"
        elif d["within_noise"]:
            word = "no difference beyond noise"
        else:
            word = "ESG-ConvNeXt better" if d["mean"] > 0 else "ESG-ConvNeXt worse"
        ci = "" if d["low"] != d["low"] else f", 95 % interval [{d['low']:+.1f}, {d['high']:+.1f}]"
        lines.append(f"- vs {part['model'].iloc[0]}: {d['mean']:+.1f} points accuracy over {len(seeds)} "
                     f"paired seed(s){ci} — {word}.")
    return "\n".join(lines) + "\n"


def leak_section(records, dataset: str = "x-sdd", keys: Sequence[str] = ("esg-convnext", "convnextv2")) -> str:
    from esg_lib import experiments as E

    recs = [r for r in records if r["dataset"] == dataset and r["model"] in keys]
    protocols = {r.get("protocol") or "leak-free" for r in recs}
    if len(protocols) < 2:
        return ""
    frame = _ordered(E.records_frame(recs), keys)
    return (f"##### The leak ({dataset}, test accuracy %, mean ± std over seeds)\n\n"
            "*leak* = augment-then-split minus augment-then-group-split (near-copies of training "
            "images in the test part); *augmented test* = augment-then-group-split minus leak-free "
            "(a test part grown ×4 with rotated/noisy/brightened copies, no leak). Paired per seed, "
            "95 % interval in brackets.\n\n" + E.markdown_table(E.protocol_table(frame)) + "\n")


def per_class_section(records, dataset: str, keys: Sequence[str]) -> str:
    import numpy as np
    import pandas as pd

    recs = [r for r in _select(records, dataset, "leak-free", keys) if r.get("per_class_recall")]
    if not recs:
        return ""
    classes = list(recs[0]["per_class_recall"])
    rows = []
    for key in keys:
        mine = [r for r in recs if r["model"] == key]
        if not mine:
            continue
        row = {"model": mine[0].get("label") or key, "n seeds": len(mine)}
        for c in classes:
            vals = [100 * r["per_class_recall"][c] for r in mine if c in r["per_class_recall"]]
            row[c] = f"{np.mean(vals):.1f}" if vals else "—"
        rows.append(row)
    from esg_lib.experiments import markdown_table

    return (f"##### Per-class recall ({dataset}, leak-free, test part, mean over seeds, %)\n\n"
            + markdown_table(pd.DataFrame(rows)) + "\n")


def tuning_section(profile: str, results: str | Path) -> str:
    from . import tuning as T

    if profile not in T.CANDIDATES:
        return ""
    records = T.load_records(profile, results)
    if not records:
        return ""
    return ("##### Recipe tuning (validation part only)\n\n"
            "Every comparison row tries the same candidate recipes on seed 0's split (`esg tune`); "
            "the winner on validation F1 is the row's recipe in the model table, and `esg queue` "
            "trains a row only once its tuning is finished (rows not listed here are not tuned yet).\n\n"
            + T.tuning_table_markdown(profile, records) + "\n")


def results_block(profile: str, results: str | Path = "results") -> str:
    """Every section of the README results block for ``profile`` (see the module docstring)."""
    from esg_lib import experiments as E

    from . import plan as P
    from .runs import aggregate_records, table_markdown

    get_profile(profile)
    records = load_records(profile, results)
    parts = []
    if profile in P.PLANS:
        parts.append("##### Progress of the experiment plan\n\nFrom the committed run records "
                     f"(`esg queue --profile {profile} --status`); hours spent are the runs' own wall-clock "
                     "seconds, on the hardware named in the last column; hours left is a planning estimate for "
                     "a machine like the one that wrote this table (each missing run as the median of its "
                     "row's finished or tuning runs on the same kind of machine, CPU or GPU, the ablation rows "
                     "as the full network, other datasets scaled by image count; ≥ where some rows have no "
                     "runs yet).\n\n"
                     + P.status_markdown(profile, results, out=None) + "\n")
    parts.append(tuning_section(profile, results))
    if not records:
        parts.append(f"No `{profile}`-profile runs are committed yet (`results/{profile}/runs/` is empty).")
        return "\n".join(p for p in parts if p).strip()
    current = current_records(profile, records)
    comparison = E.COMPARISON_MODELS
    ablation = E.ABLATION_MODELS
    parts += [
        side_by_side_section(profile, current, "x-sdd", 3, comparison, "X-SDD — beside the paper's Table 3",
                             results),
        paired_section(current, "x-sdd", comparison),
        verdict_section(current),
        leak_section(current),
        side_by_side_section(profile, current, "x-sdd", 2, ablation,
                             "X-SDD ablation — beside the paper's Table 2 (the paper's rows are on NEU-CLS-64)",
                             results),
        side_by_side_section(profile, current, "neu-cls-64", 1, comparison,
                             "NEU-CLS-64 — beside the paper's Table 1", results),
        paired_section(current, "neu-cls-64", comparison),
        per_class_section(current, "x-sdd", comparison),
    ]
    details = "\n".join(table_markdown(t, rows, profile).replace("# ", "##### Details: ", 1)
                        for t, rows in aggregate_records(records).items())
    parts.append(details)
    return "\n".join(p for p in parts if p).strip()
