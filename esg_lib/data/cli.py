"""``esg data``: list, info, verify, fetch, audit, split.

Also exports :func:`add_data_arguments` / :func:`data_kwargs` so other commands (``esg train``) take
the same ``--dataset/--protocol/--seed/...`` options with the same defaults as :func:`prepare_data`.
"""
from __future__ import annotations

import argparse
import json
import sys

from .registry import KNOWN, embedded_dir, fetched_dir
from .split import PROTOCOLS


def add_data_arguments(parser: argparse.ArgumentParser, *, img_size: int | None = 64,
                       decoding: bool = True) -> None:
    """Dataset and split options shared by every command that builds data."""
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", default="x-sdd",
                   help="known name (x-sdd, neu-cls-64) or a folder with one sub-folder per class "
                        "(default: x-sdd, embedded)")
    g.add_argument("--protocol", default="leak-free", choices=PROTOCOLS,
                   help="leak-free (default): split, then augment train; augment-then-split: the paper's "
                        "inferred protocol (leaks); augment-then-group-split: same test distribution, no leak")
    g.add_argument("--seed", type=int, default=0, help="drives the split and the augmentation (default 0)")
    g.add_argument("--val-fraction", type=float, default=0.1, help="of the training part (default 0.1)")
    g.add_argument("--test-fraction", type=float, default=0.2, help="default 0.2 (the paper's 8:2)")
    g.add_argument("--max-images", type=int, default=None, help="class-stratified subset of source images")
    g.add_argument("--augment-copies", type=int, default=3,
                   help="offline copies per image: rotate, noise, brightness (default 3: the paper's x4)")
    if decoding:
        if img_size is not None:
            g.add_argument("--img-size", type=int, default=img_size, help=f"pixels (default {img_size})")
        g.add_argument("--online-augment", action="store_true", help="random flips/rotation/brightness/noise "
                       "each time a training image is read")
        g.add_argument("--skip-bad-files", action="store_true",
                       help="leave undecodable images out (listed in a warning) instead of stopping")


def data_kwargs(args: argparse.Namespace) -> dict:
    """``prepare_data`` keyword arguments from options added by :func:`add_data_arguments`."""
    kw = dict(dataset=args.dataset, seed=args.seed, protocol=args.protocol, val_fraction=args.val_fraction,
              test_fraction=args.test_fraction, max_images=args.max_images, augment_copies=args.augment_copies)
    for name in ("img_size", "online_augment", "skip_bad_files"):
        if hasattr(args, name):
            kw[name] = getattr(args, name)
    return kw


VERIFY_EPILOG = """\
output (stdout):
  per-class counts (for a known dataset, the table against its manifest), then
  byte-identical groups: N (...)      files with the same bytes, if any
  note: skipped non-image file C/F    non-image and hidden files inside class folders
  cannot decode: C/F: WHY             one line per bad file, WHY being one of: empty file
                                      (0 bytes); not an image Pillow can read; truncated or
                                      corrupt image data; decompression bomb, refused
  and a last line, one of:
  OK: N images, K classes (...)
  FAILED: N of M file(s) cannot be decoded
  DIFFERS from the committed manifest: ...

exit status:
  0  every image decodes (and a known dataset matches its manifest)
  1  some file cannot be decoded, or a known dataset differs from its manifest
  2  bad usage, or no dataset there (missing folder, no class folders): one line on stderr
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="datasets: list, info, verify, fetch, audit, split",
                              description="Datasets: where they are, are they intact, get them, audit splits.")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    q = sub.add_parser("list", help="known datasets and where they are")
    q.set_defaults(func=cmd_list)

    q = sub.add_parser("info", help="provenance, license and class-name table of a known dataset")
    q.add_argument("name", choices=list(KNOWN))
    q.set_defaults(func=cmd_info)

    q = sub.add_parser("verify", help="per-class counts, every image decoded; a known dataset is checked "
                       "against its manifest", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Count, hash and decode every image of a dataset (with the decoder\n"
                       "training uses); check a known dataset against its committed manifest.",
                       epilog=VERIFY_EPILOG)
    q.add_argument("dataset", nargs="?", default="x-sdd", help="known name or folder (default x-sdd)")
    q.add_argument("--no-decode", dest="decode", action="store_false",
                   help="only list and hash the files (quicker; a file that cannot be decoded goes unnoticed)")
    q.add_argument("--decode", dest="decode", action="store_true", help=argparse.SUPPRESS)  # the default now
    q.set_defaults(func=cmd_verify, decode=True)

    q = sub.add_parser("fetch", help="download (or copy) a known dataset into the fetched-data folder, verified")
    q.add_argument("name", choices=list(KNOWN))
    q.add_argument("--source", help="URL, zip/tar file or folder instead of the pinned upstream archive "
                   "(NEU-CLS-64 also reads $ESG_NEU_CLS_64)")
    q.add_argument("--sha256", help="expected sha256 of the archive file (content is always verified)")
    q.add_argument("--force", action="store_true", help="replace an existing fetched copy")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_fetch)

    q = sub.add_parser("audit", help="count test images whose source (or a byte-identical twin) feeds training")
    q.add_argument("--manifest", help="audit a written split manifest instead of computing splits")
    add_data_arguments(q, decoding=False)
    q.set_defaults(protocol="all")
    for a in q._actions:  # allow "all" here
        if a.dest == "protocol":
            a.choices = ["all", *PROTOCOLS]
            a.help = "protocol to audit, or all (default)"
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=cmd_audit)

    q = sub.add_parser("split", help="write the split manifest (path, class, split, sha256, source)")
    add_data_arguments(q, decoding=False)
    q.add_argument("--out", required=True, help="TSV file to write")
    q.set_defaults(func=cmd_split)


def cmd_list(args) -> int:
    from .dataset import resolve_dataset
    from .errors import DataError

    print(f"fetched-data folder: {fetched_dir()}")
    for name, spec in KNOWN.items():
        try:
            where = resolve_dataset(name, fetch=False)
            status = f"{where.origin}: {where.root}"
        except DataError as exc:
            status = f"absent ({exc})"
        print(f"{name:<11} {spec.title}\n{'':<11} {status}")
    return 0


def cmd_info(args) -> int:
    from .manifest import class_counts, parse_manifest

    spec = KNOWN[args.name]
    counts = class_counts(parse_manifest(spec.manifest_text()))
    print(spec.title)
    print(f"upstream: https://github.com/{spec.repo} @ {spec.commit}")
    print(f"archive:  {spec.url}")
    print(f"license:  {spec.license}")
    print(f"cite:     {spec.citation}")
    if spec.embedded:
        print(f"embedded: {embedded_dir()}")
    if spec.env_var:
        print(f"your own copy: --source or ${spec.env_var} (folder, zip or URL)")
    width = max(len(c) for c in spec.class_table)
    print(f"\n{'label':>5}  {'folder':<{width}}  {'paper name':<28} {'images':>6}")
    for i, (folder, paper) in enumerate(spec.class_table.items()):
        print(f"{i:>5}  {folder:<{width}}  {paper:<28} {counts[folder]:>6}")
    print(f"{'':>5}  {'total':<{width}}  {'':<28} {sum(counts.values()):>6}")
    return 0


def cmd_verify(args) -> int:
    from .verify import verify_dataset

    report = verify_dataset(args.dataset, decode=args.decode)
    print(report.render())
    return 0 if report.ok else 1


def cmd_fetch(args) -> int:
    from .fetch import fetch_dataset

    fetch_dataset(args.name, args.source, force=args.force, sha256=args.sha256,
                  progress=not args.no_progress and sys.stderr.isatty())
    return 0


def cmd_audit(args) -> int:
    from .audit import leak_audit
    from .dataset import plan_data

    results = {}
    if args.manifest:
        results[args.manifest] = leak_audit(args.manifest)
    else:
        kw = data_kwargs(args)
        protocols = PROTOCOLS if args.protocol == "all" else (args.protocol,)
        for protocol in protocols:
            kw["protocol"] = protocol
            results[protocol] = leak_audit(plan_data(**kw))
    if args.json:
        print(json.dumps({k: v.as_dict() for k, v in results.items()}, indent=2))
        return 0
    if not args.manifest:
        print(f"dataset {args.dataset}, seed {args.seed}: test items whose source image (or a byte-identical "
              "twin) also feeds training")
    width = max(len(k) for k in results)
    print(f"{'':<{width}}  {'train':>6} {'val':>6} {'test':>6} {'test leaked':>12} {'val leaked':>11}")
    for k, r in results.items():
        print(f"{k:<{width}}  {r.train_items:>6} {r.val_items:>6} {r.test_items:>6} "
              f"{r.test_leaked:>5} ({r.test_leak_fraction:>4.0%}) {r.val_leaked:>11}")
    return 0


def cmd_split(args) -> int:
    from .dataset import plan_data, write_split_manifest

    plan = plan_data(**data_kwargs(args))
    path = write_split_manifest(plan.rows(), args.out)
    counts = {s: sum(it.split == s for it in plan.items) for s in ("train", "val", "test")}
    print(f"wrote {path}: " + ", ".join(f"{s} {n}" for s, n in counts.items()))
    return 0
