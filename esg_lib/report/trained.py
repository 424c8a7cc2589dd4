"""The reading of a profile whose rows were trained on searched recipes (`cpu2`, issue 33).

Issue 33 asks whether ESG-ConvNeXt still trails ResNet18 and DenseNet121 once every row is trained
competently. This section of the profile's generated block answers from the committed records only:

- **Recipes**: each row's recipe and where it comes from (its own search, or its family's winner).
- **Contrasts**: four paired per-seed differences in test accuracy, ESG-ConvNeXt − ResNet18,
  ESG-ConvNeXt − DenseNet121, PReLU (row 5 − row 4) and the attention (row 4 − row 3). Each has a 95 %
  t interval (n − 1 degrees of freedom) and a paired t test; Holm's correction runs over the family
  of these four. *Beyond noise* means Holm p < 0.05. Beside each one is the same contrast on the base
  profile (`cpu`: the earlier recipes, 3 seeds) under the same rule, so what changed can be read off.
- **Aims**: the issue's 5-seed mean aims (ESG-ConvNeXt ≥ 91 %, ResNet18 ≥ 93 %, DenseNet121 ≥ 96 %).
- **Curves**: each row's runs by the one-word verdict on their curves (:func:`esg_lib.metrics.curve_verdict`),
  which the run records keep (``curve``).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from esg_lib.engine.config import CPU2_FAMILY, CPU2_RECIPES, SEARCH_MODELS, ProfileRef, get_profile
from esg_lib.markdown import markdown_rows

from .frames import holm, paired_difference

# (minuend, subtrahend, what the difference measures): the family Holm's correction runs over
CONTRASTS: tuple[tuple[str, str, str], ...] = (
    ("esg-convnext", "resnet18", "ESG-ConvNeXt − ResNet18"),
    ("esg-convnext", "densenet121", "ESG-ConvNeXt − DenseNet121"),
    ("esg-convnext", "esg-abl4", "PReLU: row 5 (ESG-ConvNeXt) − row 4"),
    ("esg-abl4", "esg-abl3", "attention: row 4 − row 3"),
)
AIMS: dict[str, float] = {"esg-convnext": 91.0, "resnet18": 93.0, "densenet121": 96.0}
BASE_OF: dict[str, str] = {"cpu2": "cpu"}
ALPHA = 0.05


def _acc_by_seed(records: Sequence[Mapping[str, Any]], model: str, dataset: str) -> dict[int, float]:
    return {int(r["seed"]): 100.0 * float(r["acc"]) for r in records
            if r["model"] == model and r["dataset"] == dataset and (r.get("protocol") or "leak-free") == "leak-free"
            and r.get("acc") is not None}


def contrasts(records: Sequence[Mapping[str, Any]], dataset: str = "x-sdd") -> list[dict[str, Any]]:
    """Each contrast of :data:`CONTRASTS` on the seeds both rows have, with Holm's p over the family."""
    rows = []
    for a, b, label in CONTRASTS:
        left, right = _acc_by_seed(records, a, dataset), _acc_by_seed(records, b, dataset)
        seeds = sorted(set(left) & set(right))
        d = paired_difference([left[s] for s in seeds], [right[s] for s in seeds]) if seeds else None
        rows.append({"label": label, "seeds": seeds, "diff": d})
    adjusted = holm([r["diff"]["p"] if r["diff"] else float("nan") for r in rows])
    for row, p_holm in zip(rows, adjusted):
        row["p_holm"] = p_holm
    return rows


def _contrast_text(row: Mapping[str, Any]) -> str:
    d = row["diff"]
    if d is None:
        return "not measured yet"
    n = len(row["seeds"])
    if n < 2:
        return f"{d['mean']:+.1f} (1 seed: no interval, untested)"
    verdict = "beyond noise" if row["p_holm"] < ALPHA else "within noise"
    return (f"{d['mean']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}], {n} seeds, Holm p {row['p_holm']:.3f}: "
            f"{verdict}")


def recipe_rows(profile: ProfileRef) -> list[list[str]]:
    """Each model-table row: its recipe's source and the recipe's fields (or what it waits for)."""
    prof = get_profile(profile)
    rows = []
    for key, spec in prof.models.items():
        source = key if key in SEARCH_MODELS else CPU2_FAMILY.get(key)
        if source is None:
            rows.append([spec.label, "no search yet", "—"])
            continue
        origin = "its own search" if source == key else f"{source}'s search (family)"
        recipe = CPU2_RECIPES.get(source)
        text = ", ".join(f"{k} {v}" for k, v in recipe.items()) if recipe else "search not finished"
        rows.append([spec.label, origin, text])
    return rows


def aim_lines(records: Sequence[Mapping[str, Any]], dataset: str = "x-sdd") -> list[str]:
    lines = []
    for model, aim in AIMS.items():
        accs = list(_acc_by_seed(records, model, dataset).values())
        if not accs:
            lines.append(f"- {model}: aim ≥ {aim:g} % — no runs yet.")
            continue
        mean = sum(accs) / len(accs)
        lines.append(f"- {model}: aim ≥ {aim:g} % — {'met' if mean >= aim else 'not met'}: "
                     f"{mean:.1f} % over {len(accs)} seed(s).")
    return lines


def curve_rows(records: Sequence[Mapping[str, Any]], dataset: str = "x-sdd") -> list[list[str]]:
    counts: dict[str, dict[str, int]] = {}
    for r in records:
        if r["dataset"] != dataset or (r.get("protocol") or "leak-free") != "leak-free":
            continue
        verdict = (r.get("curve") or {}).get("verdict", "not recorded")
        counts.setdefault(r["model"], {}).setdefault(verdict, 0)
        counts[r["model"]][verdict] += 1
    return [[model, ", ".join(f"{v} {n}" for v, n in sorted(c.items()))] for model, c in counts.items()]


def trained_section(profile: ProfileRef, records: Sequence[Mapping[str, Any]],
                    base_records: Sequence[Mapping[str, Any]] = (), dataset: str = "x-sdd") -> str:
    """The reading of a searched profile (module docstring), as Markdown."""
    prof = get_profile(profile)
    base = BASE_OF.get(prof.name, "")
    now, before = contrasts(records, dataset), contrasts(base_records, dataset)
    table = [[r["label"], _contrast_text(r), _contrast_text(b)] for r, b in zip(now, before)]
    out = [f"##### Reading: trained on searched recipes ({dataset}, leak-free, test accuracy, points)", "",
           "Paired per seed; 95 % t intervals; Holm's correction over these "
           f"{len(CONTRASTS)} contrasts, *beyond noise* = Holm p < {ALPHA:g}. "
           f"The last column is the same contrast on `{base}` (its own recipes, its records).", "",
           markdown_rows(["contrast", f"`{prof.name}`", f"`{base}`"], table), "",
           "Aims of issue 33 (5-seed means):", "", *aim_lines(records, dataset), ""]
    curves = curve_rows(records, dataset)
    if curves:
        out += ["Curves of each row's runs (under-trained: best epoch last and still rising; memorising: "
                "training ≥ 99 % with validation 5 points or more below):", "",
                markdown_rows(["row", "runs by verdict"], curves), ""]
    out += ["Each row's recipe:", "", markdown_rows(["row", "recipe from", "recipe"], recipe_rows(prof))]
    return "\n".join(out) + "\n"
