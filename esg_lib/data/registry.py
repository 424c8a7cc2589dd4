"""Known datasets, their class-name tables, and where data lives on disk.

The paper uses NEU-CLS-64 (main results) and X-SDD (generalisation); both are "known" datasets with a
committed content manifest (``esg_lib/data/<name>.tsv``: ``<class>/<file>\\t<sha256>`` per image,
sorted bytewise) and a pinned upstream archive (GitHub's archive of one commit). Any other value given
as a dataset is a folder-per-class directory.

Locations (each overridable by an environment variable, so an installed package and CI work alike):

- embedded X-SDD: ``<checkout>/data/x-sdd`` (committed, Apache-2.0, never written by code);
- fetched datasets: ``$ESG_DATA_DIR`` or ``<checkout>/data/fetched`` (git-ignored);
- decode cache: ``$ESG_CACHE_DIR`` or ``<checkout>/data/cache`` (git-ignored);
- a user's own NEU-CLS-64 (folder, zip or URL): ``$ESG_NEU_CLS_64``.

Outside a checkout (a wheel install) the fetched and cache folders default to ``~/.cache/esg_lib``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Mapping, Protocol, Sequence

PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT = PACKAGE_DIR.parents[1]


def checkout_root() -> Path | None:
    """The project checkout holding this package, or None for an installed wheel."""
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "esg_lib").is_dir():
        return _CHECKOUT
    return None


def _user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "esg_lib"


def embedded_dir() -> Path:
    """Where the committed X-SDD lives (may be absent outside a checkout)."""
    root = checkout_root()
    return (root / "data" / "x-sdd") if root else (_user_cache() / "x-sdd-embedded-absent")


def _location(env_var: str, checkout_subdir: str, user_subdir: str) -> Path:
    """``$env_var`` if set, else ``<checkout>/data/<checkout_subdir>``, else the user cache."""
    env = os.environ.get(env_var)
    if env:
        return Path(env).expanduser()
    root = checkout_root()
    return (root / "data" / checkout_subdir) if root else (_user_cache() / user_subdir)


def fetched_dir() -> Path:
    """Where ``esg data fetch`` puts datasets: ``$ESG_DATA_DIR`` or ``data/fetched``."""
    return _location("ESG_DATA_DIR", "fetched", "fetched")


def cache_dir() -> Path:
    """Where decoded images are cached: ``$ESG_CACHE_DIR`` or ``data/cache``."""
    return _location("ESG_CACHE_DIR", "cache", "decoded")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset the project knows by name."""

    name: str
    title: str
    class_table: Mapping[str, str]  # folder name -> the paper's name, in label order
    abbreviations: Mapping[str, str]  # folder name -> short label for cramped plots
    url: str  # pinned archive of one commit
    archive_subdir: str  # where the class folders sit inside the archive, below its top folder
    repo: str
    commit: str
    license: str
    citation: str
    color_mode: str  # "RGB" or "L": how every image is decoded before becoming 3 channels
    env_var: str | None = None  # user-supplied source (folder, zip or URL)
    embedded: bool = False
    extra_files: tuple[str, ...] = field(default=())  # files copied next to the class folders on fetch
    short_title: str = ""  # as the paper spells it, in figure titles and captions ("X-SDD"); "": the name
    paper_table: int = 1  # the paper's table with the model comparison on this dataset (Table 1: the main one)

    @property
    def class_names(self) -> list[str]:
        return list(self.class_table)

    @property
    def display_names(self) -> list[str]:
        return list(self.class_table.values())

    def manifest_text(self) -> str:
        return resources.files("esg_lib.data").joinpath(f"{self.name}.tsv").read_text("utf-8")


# X-SDD folder names are the dataset authors'; the paper (its X-SDD section) renames them, e.g.
# "red iron" -> "red tin", "iron sheet ash" -> "tin grey". Figures use the paper's names so they can be
# set side by side with the paper's; the folder names stay the labels' identity.
X_SDD_CLASSES: dict[str, str] = {
    "finishing roll printing": "finishing roll marks",
    "iron sheet ash": "tin grey",
    "oxide scale of plate system": "plate system oxidation",
    "oxide scale of temperature system": "temperature system oxidation",
    "red iron": "red tin",
    "slag inclusion": "entrapment slag",
    "surface scratch": "surface scratches",
}
X_SDD_ABBREV: dict[str, str] = {
    "finishing roll printing": "FRP",
    "iron sheet ash": "ISA",
    "oxide scale of plate system": "OSPS",
    "oxide scale of temperature system": "OSTS",
    "red iron": "RI",
    "slag inclusion": "SI",
    "surface scratch": "SS",
}

# NEU-CLS-64 folder abbreviations as in the paper's Fig. 10/12 axis labels; names exactly as in its
# Fig. 12 text ("pitting surface", "scale": not the dataset's usual "pitted surface", "rolled-in scale").
NEU_CLASSES: dict[str, str] = {
    "cr": "cracks",
    "gg": "pits",
    "in": "inclusion",
    "pa": "patches",
    "ps": "pitting surface",
    "rp": "rust",
    "rs": "scale",
    "sc": "scratches",
    "sp": "oil stains",
}

KNOWN: dict[str, DatasetSpec] = {
    "x-sdd": DatasetSpec(
        name="x-sdd",
        title="X-SDD (Xsteel surface defect dataset), 1360 images, 7 classes",
        class_table=X_SDD_CLASSES,
        abbreviations=X_SDD_ABBREV,
        url="https://github.com/Fighter20092392/X-SDD-A-New-benchmark/archive/"
        "adf880814dbd365c73fc3643019272b5637fecc2.zip",
        archive_subdir="X-SDD/datas",
        repo="Fighter20092392/X-SDD-A-New-benchmark",
        commit="adf880814dbd365c73fc3643019272b5637fecc2",
        license="Apache-2.0",
        citation="Feng X., Gao X., Luo L. X-SDD: A New Benchmark for Hot Rolled Steel Strip Surface "
        "Defects Classification. Symmetry 13(4):706 (2021)",
        # every file is stored as RGB but has R = G = B in every pixel (checked for all 1360), so
        # decoding as L loses nothing and keeps the noise augmentation grey like the images
        color_mode="L",
        short_title="X-SDD",
        paper_table=3,
        embedded=True,
        extra_files=("LICENSE",),
    ),
    "neu-cls-64": DatasetSpec(
        name="neu-cls-64",
        title="NEU-CLS-64 (NEU surface defect database, 64x64 crops), 7226 images, 9 classes",
        class_table=NEU_CLASSES,
        abbreviations={k: k for k in NEU_CLASSES},
        url="https://github.com/mahesh-sudhakar/NEU_XAI/archive/"
        "e913e464f799b1f316351093ef9e39968dc2cb9c.zip",
        archive_subdir="NEU-CLS-64",
        repo="mahesh-sudhakar/NEU_XAI",
        commit="e913e464f799b1f316351093ef9e39968dc2cb9c",
        license="none published (Northeastern University data; academic use, cite Song & Yan 2013); "
        "never committed to this project",
        citation="Song K., Yan Y. A noise robust method based on completed local binary patterns for "
        "hot-rolled steel strip surface defects. Applied Surface Science 285:858-864 (2013)",
        # 7225 files are grayscale and one (sp/64.jpg) is an RGB JPEG: decoding all as L keeps them alike.
        color_mode="L",
        short_title="NEU-CLS-64",
        paper_table=1,
        env_var="ESG_NEU_CLS_64",
    ),
}


def display_names_for(class_names: list[str]) -> list[str]:
    """The paper's names for these folder names if they form a known dataset's class set, else as is.

    A user's own copy of NEU-CLS-64 or X-SDD (given as a path) thus still gets the paper's names.
    """
    for spec in KNOWN.values():
        if set(class_names) == set(spec.class_table):
            return [spec.class_table[c] for c in class_names]
    return list(class_names)


def dataset_title(name: str) -> str:
    """A dataset's name as the paper spells it (``x-sdd`` → ``X-SDD``); a folder keeps its name."""
    spec = KNOWN.get(name)
    return (spec.short_title or spec.name) if spec is not None else name


def comparison_table(name: str) -> int:
    """The paper's table that holds the model comparison on ``name`` (Table 3 for X-SDD); any other
    dataset, a folder included, is shown beside Table 1, the paper's main comparison."""
    spec = KNOWN.get(name)
    return spec.paper_table if spec is not None else 1


# The paper's Fig. 14 caption, panels (a)-(g): X-SDD's folder names (= the caption's names) in the
# caption's order. Tables and the other figures use the names of the paper's X-SDD text instead
# (``bundle.display_names``, e.g. "tin grey" for "iron sheet ash"); docs/data.md says why.
FIG14_PANELS = ("finishing roll printing", "iron sheet ash", "oxide scale of plate system", "slag inclusion",
                "oxide scale of temperature system", "red iron", "surface scratch")


class NamesClasses(Protocol):
    """Anything that names a dataset's classes in label order: a ``DataBundle``, a ``SplitPlan``."""

    class_names: Sequence[str]
    display_names: Sequence[str]


def sample_grid_rows(bundle: NamesClasses) -> tuple[list[int], list[str]]:
    """``(class indices, row labels)`` for a dataset's sample grid: on X-SDD the paper's Fig. 14
    panels (a)-(g) with the caption's names in its order; elsewhere label order and display names."""
    names = list(bundle.class_names)
    if sorted(names) == sorted(FIG14_PANELS):
        return ([names.index(c) for c in FIG14_PANELS],
                [f"({chr(97 + i)}) {c}" for i, c in enumerate(FIG14_PANELS)])
    return list(range(len(names))), list(bundle.display_names)


def short_class_names(dataset: str, class_names: Sequence[str]) -> list[str]:
    """Short axis labels for a dataset's classes (folder names in label order): the paper's
    two-letter codes on NEU-CLS-64, our abbreviations on X-SDD (``esg data info`` lists both);
    the names themselves for a dataset without any."""
    spec = KNOWN.get(dataset)
    table = dict(spec.abbreviations) if spec is not None and spec.abbreviations else {}
    return [table.get(c, c) for c in class_names]
