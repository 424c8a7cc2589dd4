"""``prepare_data``: from a dataset name or folder to train/val/test tensors, ready for the engine.

Pipeline: resolve the dataset (known name first, else a folder-per-class path) -> list and hash its
files -> for a known dataset, check them against the committed manifest -> optional stratified subset
(``max_images``) -> decode every distinct content once (cached) -> plan the split (protocol, seed) ->
build the augmented copies -> normalisation statistics from the training part only.

Everything that determines the data is recorded in :attr:`DataBundle.identity`, and the split itself
(path, class, split, sha256, source per item) in :attr:`DataBundle.split_rows`.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from .augment import (OFFLINE_OPS, augmentation_params, make_copies, training_transform,
                      training_transform_identity)
from .decode import DECODE_VERSION, RESAMPLE, decode_images
from .errors import (CorruptImageError, DataError, DataWarning, DatasetLayoutError, DatasetNotFoundError,
                     ManifestMismatchError)
from .fetch import fetch_dataset, find_class_root, is_url, normalize_name
from .folder import FolderScan, ImageRecord, scan_folder
from .manifest import ManifestDiff, compare, parse_manifest, sha256_text
from .registry import KNOWN, DatasetSpec, display_names_for, embedded_dir, fetched_dir
from .split import SPLITS, PlannedItem, check_split_args, plan_split, stratified_subset

SPLIT_MANIFEST_COLUMNS: tuple[str, ...] = ("path", "class", "split", "sha256", "source")
DATA_API_VERSION = 1


@dataclass(frozen=True)
class DataConfig:
    """Everything that decides a :class:`DataBundle`: the data part of a training configuration.

    ``prepare_data(cfg.data)`` takes it whole (the engine's ``TrainConfig.data``); the keyword form
    ``prepare_data("x-sdd", img_size=64, ...)`` builds one. Each field is recorded in the bundle's
    :attr:`DataBundle.identity`, and so in every run identity.
    """

    dataset: str | os.PathLike = "x-sdd"
    img_size: int = 64
    seed: int = 0
    protocol: str = "leak-free"
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    max_images: int | None = None
    augment_copies: int = 3
    online_augment: bool = False
    skip_bad_files: bool = False
    online_crop: float = 0.0          # RandomResizedCrop's smallest area scale; 0 = off (augment.training_transform)
    rand_augment: int = 0             # RandAugment operations per image; 0 = off

    def split_fields(self) -> dict:
        """The keywords of :func:`plan_data` (what decides the split, not the pixels)."""
        return dict(seed=self.seed, protocol=self.protocol, val_fraction=self.val_fraction,
                    test_fraction=self.test_fraction, max_images=self.max_images,
                    augment_copies=self.augment_copies)


# ---------------------------------------------------------------- the torch Dataset
class TensorImageDataset(torch.utils.data.Dataset):
    """Pre-decoded images held in memory as uint8, normalised on the fly.

    ``images``: uint8 (N, 3, H, W); ``labels``: int64 (N,); ``paths``: absolute source path per item
    (an augmented copy points at its source file). ``__getitem__`` returns ``(float32 (3, H, W)
    normalised, int label)``; ``transform`` (online augmentation) acts on float [0, 1] images first.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | Sequence[int],
        paths: Sequence[str],
        *,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        sha256s: Sequence[str] | None = None,
        copies: Sequence[int] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {tuple(images.shape)} {images.dtype}")
        self.images = images
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.paths = list(paths)
        if not (len(self.labels) == len(self.paths) == len(images)):
            raise ValueError("images, labels and paths must have the same length")
        self.sha256s = list(sha256s) if sha256s is not None else []
        self.copies = list(copies) if copies is not None else [0] * len(images)
        self.class_names = list(class_names) if class_names is not None else []
        self.transform = transform
        self.set_stats(mean, std)

    def set_stats(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i].float().div_(255.0)
        if self.transform is not None:
            x = self.transform(x)
        return (x - self.mean) / self.std, int(self.labels[i])

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (3, H, W) or (B, 3, H, W) -> normalised float32 (no augmentation)."""
        return (batch.float() / 255.0 - self.mean) / self.std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised float -> float in [0, 1] (for showing images, e.g. under a Grad-CAM map)."""
        return (x * self.std + self.mean).clamp(0.0, 1.0)

    def class_counts(self) -> list[int]:
        n = max(len(self.class_names), int(self.labels.max()) + 1 if len(self.labels) else 0)
        return torch.bincount(self.labels, minlength=n).tolist()


# ---------------------------------------------------------------- the bundle
@dataclass
class DataBundle:
    """Train/val/test datasets plus everything needed to describe and reproduce them."""

    train: TensorImageDataset
    val: TensorImageDataset
    test: TensorImageDataset
    class_names: list[str]
    display_names: list[str]
    dataset_name: str
    identity: dict
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    split_rows: list[dict]
    root: Path
    notes: list[str] = field(default_factory=list)  # skipped non-image files, skipped bad files

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def write_split_manifest(self, path: str | Path) -> Path:
        """Write ``split_rows`` as a TSV (path, class, split, sha256, source); paths relative to the root."""
        return write_split_manifest(self.split_rows, path)

    def summary(self) -> str:
        parts = [f"{s} {len(getattr(self, s))}" for s in SPLITS]
        return (f"{self.dataset_name}: {len(self.class_names)} classes, {', '.join(parts)} "
                f"({self.identity['protocol']}, seed {self.identity['seed']}, {self.identity['img_size']} px)")


def write_split_manifest(rows: Sequence[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = split_manifest_text(rows)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def split_manifest_text(rows: Sequence[dict]) -> str:
    lines = ["\t".join(SPLIT_MANIFEST_COLUMNS)]
    lines += ["\t".join(str(r[c]) for c in SPLIT_MANIFEST_COLUMNS) for r in rows]
    return "\n".join(lines) + "\n"


def read_split_manifest(path: str | Path) -> list[dict]:
    """Rows of a split manifest written by :func:`write_split_manifest`."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"split manifest not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or tuple(lines[0].split("\t")) != SPLIT_MANIFEST_COLUMNS:
        raise DataError(f"{path} is not a split manifest (header must be: {' '.join(SPLIT_MANIFEST_COLUMNS)})")
    return [dict(zip(SPLIT_MANIFEST_COLUMNS, ln.split("\t"))) for ln in lines[1:] if ln]


# ---------------------------------------------------------------- resolving a dataset
@dataclass
class ResolvedDataset:
    name: str
    root: Path
    spec: DatasetSpec | None
    origin: str  # "embedded", "fetched", "$ESG_NEU_CLS_64", "path"


def _missing_known(spec: DatasetSpec) -> DatasetNotFoundError:
    where = f"{fetched_dir() / spec.name}"
    extra = (f", or set {spec.env_var} to your folder, zip or URL" if spec.env_var else "")
    return DatasetNotFoundError(
        f"{spec.name} is not available (looked in {where}): run `esg data fetch {spec.name}` "
        f"(downloads the pinned copy of {spec.repo}@{spec.commit[:7]}){extra}")


def resolve_dataset(dataset: str | os.PathLike, *, fetch: bool = True) -> ResolvedDataset:
    """A known name (``x-sdd``, ``neu-cls-64``) first; else a folder-per-class path.

    X-SDD: the embedded copy, else a fetched one. NEU-CLS-64: ``$ESG_NEU_CLS_64`` (a folder is used in
    place; a zip or URL is fetched once into the fetched folder, unless ``fetch=False``, which makes
    this function free of side effects), else the fetched copy.
    """
    key = normalize_name(str(dataset))
    if key in KNOWN:
        spec = KNOWN[key]
        env = os.environ.get(spec.env_var) if spec.env_var else None
        if env:
            src = Path(env).expanduser()
            if not is_url(env) and src.is_dir():
                return ResolvedDataset(spec.name, find_class_root(src, spec), spec, f"${spec.env_var}")
            if not is_url(env) and not src.exists():
                raise DatasetNotFoundError(f"${spec.env_var} points at {src}, which does not exist")
            fetched = fetched_dir() / spec.name
            if not fetched.is_dir():
                if not fetch:
                    raise DatasetNotFoundError(
                        f"{spec.name} is not fetched yet: ${spec.env_var} = {env} is fetched on first use "
                        f"or by `esg data fetch {spec.name}`")
                fetch_dataset(spec.name, env, log=lambda msg: None)
            return ResolvedDataset(spec.name, fetched, spec, "fetched")
        if spec.embedded and embedded_dir().is_dir():
            return ResolvedDataset(spec.name, embedded_dir(), spec, "embedded")
        fetched = fetched_dir() / spec.name
        if fetched.is_dir():
            return ResolvedDataset(spec.name, fetched, spec, "fetched")
        raise _missing_known(spec)
    path = Path(dataset).expanduser()
    if not path.exists():
        raise DatasetNotFoundError(
            f"dataset {str(dataset)!r} is neither a known name ({', '.join(KNOWN)}) nor an existing folder "
            f"({path.resolve()})")
    return ResolvedDataset(path.resolve().name, path.resolve(), None, "path")


def load_dataset(dataset: str | os.PathLike, *, warn: bool = True) -> tuple[ResolvedDataset, FolderScan]:
    """Resolve, list and hash a dataset; a known dataset must match its committed manifest."""
    resolved = resolve_dataset(dataset)
    scan = scan_folder(resolved.root, warn=warn)
    if resolved.spec is not None:
        diff = manifest_diff(resolved.spec, scan)
        if not diff.ok:
            raise ManifestMismatchError(
                f"{resolved.root} does not match the {resolved.spec.name} manifest: {diff.summary()} "
                f"(see `esg data verify {resolved.spec.name}`; to use a modified copy anyway, pass its "
                "folder path as the dataset)")
    return resolved, scan


def manifest_diff(spec: DatasetSpec, scan: FolderScan) -> ManifestDiff:
    return compare(parse_manifest(spec.manifest_text()), scan.entries())


# ---------------------------------------------------------------- planning (no decoding)
@dataclass
class SplitPlan:
    """Which source image (and copy) goes where; cheap to compute (no image is decoded)."""

    dataset: ResolvedDataset
    scan: FolderScan
    records: list[ImageRecord]
    items: list[PlannedItem]
    protocol: str
    seed: int
    augment_copies: int

    def source_tag(self, copy: int) -> str:
        return "original" if copy == 0 else f"aug{copy}:{OFFLINE_OPS[(copy - 1) % len(OFFLINE_OPS)]}"

    @property
    def class_names(self) -> list[str]:
        """The class folders in label order (the bundle's ``class_names``)."""
        return list(self.scan.class_names)

    @property
    def display_names(self) -> list[str]:
        """The classes as the paper names them, in label order: a known dataset's table, else a
        folder recognised by its class set, else the folder names (the bundle's ``display_names``)."""
        if self.dataset.spec:
            return [self.dataset.spec.class_table[c] for c in self.scan.class_names]
        return display_names_for(self.scan.class_names)

    def size(self, split: str) -> int:
        """Items (images and augmented copies) in ``split``: ``len(bundle.<split>)`` without decoding
        (a file that ``skip_bad_files`` would leave out as undecodable still counts here)."""
        return sum(it.split == split for it in self.items)

    def rows(self) -> list[dict]:
        out = []
        for it in self.items:
            r = self.records[it.record]
            out.append({"path": r.rel, "class": r.class_name, "split": it.split, "sha256": r.sha256,
                        "source": self.source_tag(it.copy)})
        return out


def plan_data(
    dataset: str | os.PathLike = "x-sdd",
    *,
    seed: int = 0,
    protocol: str = "leak-free",
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    max_images: int | None = None,
    augment_copies: int = 3,
    exclude_sha256: Sequence[str] = (),
) -> SplitPlan:
    """The split of :func:`prepare_data` without decoding any image (for audits and split manifests)."""
    check_split_args(protocol, seed, val_fraction, test_fraction, augment_copies)
    resolved, scan = load_dataset(dataset)
    records = scan.records
    if max_images is not None:
        if not isinstance(max_images, int) or max_images < 1:
            raise DataError(f"max_images must be a positive integer or None, got {max_images!r}")
        records = [records[i] for i in stratified_subset(records, max_images)]
    if exclude_sha256:
        drop = set(exclude_sha256)
        records = [r for r in records if r.sha256 not in drop]
    items = plan_split(records, protocol=protocol, seed=seed, val_fraction=val_fraction,
                       test_fraction=test_fraction, augment_copies=augment_copies)
    return SplitPlan(resolved, scan, list(records), items, protocol, int(seed), augment_copies)


# ---------------------------------------------------------------- prepare_data
def prepare_data(
    dataset: str | os.PathLike | DataConfig = "x-sdd",
    img_size: int = 64,
    seed: int = 0,
    protocol: str = "leak-free",
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    max_images: int | None = None,
    augment_copies: int = 3,
    online_augment: bool = False,
    skip_bad_files: bool = False,
    *,
    use_cache: bool = True,
) -> DataBundle:
    """Load, verify, split, augment and normalise a dataset (see the module docstring).

    Takes a :class:`DataConfig` (``prepare_data(cfg.data)``; the other arguments are then ignored) or
    its fields as arguments. ``dataset``: ``"x-sdd"`` (embedded, the default), ``"neu-cls-64"``
    (fetched or ``$ESG_NEU_CLS_64``) or a folder-per-class path. ``max_images`` takes a
    class-stratified subset of source images before anything else (the smoke profile).
    ``skip_bad_files`` leaves undecodable files out with a warning that lists them; without it the
    first report names them and stops.
    """
    cfg = dataset if isinstance(dataset, DataConfig) else DataConfig(
        dataset, img_size, seed, protocol, val_fraction, test_fraction, max_images, augment_copies,
        online_augment, skip_bad_files)
    if not isinstance(cfg.img_size, int) or cfg.img_size < 8:
        raise DataError(f"img_size must be an integer >= 8, got {cfg.img_size!r}")
    if not 0.0 <= cfg.online_crop < 1.0 or cfg.rand_augment < 0:
        raise DataError(f"online_crop must be in [0, 1) and rand_augment >= 0, got {cfg.online_crop!r}, "
                        f"{cfg.rand_augment!r}")
    check_split_args(cfg.protocol, cfg.seed, cfg.val_fraction, cfg.test_fraction, cfg.augment_copies)
    base = plan_data(cfg.dataset, **cfg.split_fields())
    resolved, scan = base.dataset, base.scan
    color_mode = resolved.spec.color_mode if resolved.spec else "auto"
    decoded = decode_images([(r.sha256, r.path) for r in base.records], cfg.img_size, color_mode,
                            use_cache=use_cache)
    plan, skipped = _leave_out_undecodable(cfg, base, decoded)
    parts = _split_parts(plan, decoded, cfg)
    mean, std = channel_stats(parts["train"].images)
    for split in SPLITS:
        parts[split].set_stats(mean, std)
    parts["train"].transform = training_transform(cfg.online_augment, cfg.img_size, cfg.online_crop,
                                                  cfg.rand_augment)
    split_rows = plan.rows()
    identity = _data_identity(cfg, plan, decoded, parts, skipped, (mean, std),
                              sha256_text(split_manifest_text(split_rows)))
    notes = list(scan.notes) + [f"skipped undecodable file {rel} ({why})" for rel, why in skipped]
    return DataBundle(
        train=parts["train"], val=parts["val"], test=parts["test"],
        class_names=base.class_names, display_names=base.display_names, dataset_name=resolved.name,
        identity=identity, mean=mean, std=std, split_rows=split_rows, root=resolved.root, notes=notes)


def _leave_out_undecodable(cfg: DataConfig, base: SplitPlan, decoded) -> tuple[SplitPlan, list[tuple[str, str]]]:
    """The plan without the files that cannot be decoded, and those files with the reason; without
    ``skip_bad_files`` any such file stops the run with a :class:`CorruptImageError` naming them."""
    if not decoded.bad:
        return base, []
    root = base.dataset.root
    bad = [(r.rel, decoded.bad[r.sha256]) for r in base.records if r.sha256 in decoded.bad]
    listing = "; ".join(f"{rel} ({why})" for rel, why in bad[:10]) + (
        f"; ... (+{len(bad) - 10} more)" if len(bad) > 10 else "")
    if not cfg.skip_bad_files:
        raise CorruptImageError(
            f"{len(bad)} file(s) in {root} cannot be decoded: {listing} "
            "(fix or remove them, or pass skip_bad_files=True / --skip-bad-files to leave them out)")
    warnings.warn(f"skipped {len(bad)} undecodable file(s) in {root}: {listing}", DataWarning, stacklevel=3)
    plan = plan_data(cfg.dataset, **cfg.split_fields(), exclude_sha256=list(decoded.bad))
    empty = sorted(set(base.scan.class_names) - {r.class_name for r in plan.records})
    if empty:
        raise DatasetLayoutError(f"no decodable images left in class(es): {', '.join(empty)}")
    return plan, bad


def _split_parts(plan: SplitPlan, decoded, cfg: DataConfig) -> dict[str, TensorImageDataset]:
    """One :class:`TensorImageDataset` per split: the decoded originals, and the augmented copies the
    plan puts in it (built from their source image, seeded by the split seed)."""
    records, grayscale = plan.records, decoded.color_mode == "L"
    parts: dict[str, TensorImageDataset] = {}
    for split in SPLITS:
        its = [it for it in plan.items if it.split == split]
        shas = [records[it.record].sha256 for it in its]
        rows = torch.tensor([decoded.index[s] for s in shas], dtype=torch.long)
        images = decoded.images.index_select(0, rows) if len(rows) else \
            torch.empty((0, 3, cfg.img_size, cfg.img_size), dtype=torch.uint8)
        aug = [n for n, it in enumerate(its) if it.copy > 0]
        if aug:
            idx = torch.tensor(aug, dtype=torch.long)
            images[idx] = make_copies(images[idx], [shas[n] for n in aug], [its[n].copy for n in aug],
                                      cfg.seed, grayscale)
        parts[split] = TensorImageDataset(
            images, [records[it.record].label for it in its], [str(records[it.record].path) for it in its],
            sha256s=shas, copies=[it.copy for it in its], class_names=plan.scan.class_names)
    if len(parts["train"]) == 0 or len(parts["test"]) == 0:
        raise DatasetLayoutError(f"too few images in {plan.dataset.root} for a train/test split "
                                 f"({len(records)} images, {len(plan.scan.class_names)} classes)")
    return parts


def _data_identity(cfg: DataConfig, plan: SplitPlan, decoded, parts: dict[str, TensorImageDataset],
                   skipped: list[tuple[str, str]], stats: tuple[Sequence[float], Sequence[float]],
                   split_sha256: str) -> dict:
    """:attr:`DataBundle.identity`: the config's fields and what they produced (content and split
    hashes, decoding, normalisation). Part of every run identity: its keys and order never change."""
    scan, (mean, std) = plan.scan, stats
    return {
        "data_api": DATA_API_VERSION,
        "dataset": plan.dataset.name,
        "known_dataset": plan.dataset.spec is not None,
        "content_sha256": scan.content_sha256(),
        "n_images_in_folder": len(scan.records),
        "class_names": list(scan.class_names),
        "protocol": cfg.protocol,
        "seed": int(cfg.seed),
        "img_size": cfg.img_size,
        "val_fraction": cfg.val_fraction,
        "test_fraction": cfg.test_fraction,
        "max_images": cfg.max_images,
        "augment_copies": cfg.augment_copies,
        "augmentation": augmentation_params(cfg.augment_copies),
        **training_transform_identity(cfg.online_augment, cfg.online_crop, cfg.rand_augment),
        "skip_bad_files": cfg.skip_bad_files,
        "skipped_files": [rel for rel, _ in skipped],
        "decode": {"version": DECODE_VERSION, "color_mode": decoded.color_mode, "resample": RESAMPLE},
        "normalization": {"from": "train part", "mean": list(mean), "std": list(std)},
        "split_sizes": {s: len(parts[s]) for s in SPLITS},
        "split_sha256": split_sha256,
    }


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images on the [0, 1] scale (float64 accumulation)."""
    if len(images) == 0:
        raise DataError("cannot compute normalisation statistics of an empty training part")
    chunk = max(1, (256 << 20) // (8 * images[0].numel()))  # ~256 MB of float64 at a time
    s = torch.zeros(3, dtype=torch.float64)
    s2 = torch.zeros(3, dtype=torch.float64)
    n = 0
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].to(torch.float64).div_(255.0)
        s += x.sum(dim=(0, 2, 3))
        s2 += x.square().sum(dim=(0, 2, 3))
        n += x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / n
    std = (s2 / n - mean.square()).clamp_min(1e-12).sqrt()
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std.clamp_min(1e-3))
