"""Check a data root: ``python -m clipbayes.datasets.check --root DATA [--dataset NAME ...] [--verify N]``.

For each dataset it reports one of

* ``OK``       every file the reader needs is there, every split entry points to an image, sampled images decode;
* ``MISSING``  a folder or file is absent (which one, where it belongs, where to get it);
* ``CORRUPT``  a file is there but unusable: an unparsable split/annotation file, split entries pointing to
               missing images, images PIL cannot read, a label with two class names;
* ``ABSENT``   the dataset folder does not exist (only when no ``--dataset`` was given: then the whole data
               root is surveyed and datasets that are not installed are not errors).

The exit status is 1 when a requested dataset (or, without ``--dataset``, an installed one) is MISSING or
CORRUPT, 0 otherwise. ``--verify N`` decodes N images per dataset spread evenly over its splits (default 100;
``-1`` = all images, which reads the whole dataset; ``0`` = none).
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from . import READERS, cache
from .errors import DatasetError, DatasetFileMissingError
from .sources import SOURCES, lookup

OK, MISSING, CORRUPT, ABSENT = "OK", "MISSING", "CORRUPT", "ABSENT"


@dataclass
class Report:
    name: str
    status: str
    summary: str = ""
    details: List[str] = field(default_factory=list)


def image_problem(path: str) -> Optional[str]:
    """None if PIL can verify and fully decode the image, else the error text."""
    from PIL import Image
    try:
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            img.load()
    except Exception as err:  # PIL raises many types for broken files
        return f"{type(err).__name__}: {err}"
    return None


def _spread(items: Sequence[str], count: int) -> List[str]:
    if count < 0 or count >= len(items):
        return list(items)
    if count == 0:
        return []
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def check_dataset(root: str, name: str, verify: int = 100) -> Report:
    source = SOURCES[name]
    reader = READERS[name].probe(root)
    where = reader.dataset_dir
    if not os.path.isdir(where):
        return Report(name, ABSENT, f"no folder {where}",
                      [f"create it as described in DATASETS.md#{source.anchor} (folder name {source.folder!r})"])
    absent = []
    for need in source.needs:
        if need.for_auto_split or need.path == source.split_file:
            continue
        path = os.path.join(where, need.path)
        if not os.path.exists(path):
            absent.append(f"{'folder' if need.is_dir else 'file'} {path}\n      from: {need.source}")
    if source.split_file and not os.path.isfile(os.path.join(where, source.split_file)):
        extra = ("\n      (or run with DATASET.AUTO_SPLIT True to generate a split that is NOT CoOp's)"
                 if source.auto_split else "")
        absent.append(f"file {os.path.join(where, source.split_file)}\n"
                      f"      from: {source.source_of(source.split_file)}{extra}")
    if absent:
        return Report(name, MISSING, f"{len(absent)} required item(s) missing", absent)

    try:
        splits, origin = reader.read_records()
    except DatasetFileMissingError as err:
        return Report(name, MISSING, str(err).splitlines()[0], str(err).splitlines()[1:2])
    except (DatasetError, OSError, ValueError, KeyError) as err:
        return Report(name, CORRUPT, f"cannot read the split/annotations: {err}")

    details = []
    records = [r for part in splits for r in part]
    names_of: Dict[int, set] = {}
    for r in records:
        names_of.setdefault(r.label, set()).add(r.classname)
    clashes = {label: names for label, names in names_of.items() if len(names) > 1}
    for label, names in sorted(clashes.items())[:5]:
        details.append(f"label {label} has several class names: {sorted(names)}")

    paths = sorted({r.impath for r in records})
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        details.append(f"{len(missing)} of {len(paths)} images listed in {origin} do not exist, e.g.")
        details.extend(f"  {p}" for p in missing[:5])
    present = [p for p in paths if os.path.isfile(p)] if missing else paths
    checked = _spread(present, verify)
    broken = [(p, image_problem(p)) for p in checked]
    broken = [(p, e) for p, e in broken if e]
    if broken:
        details.append(f"{len(broken)} of {len(checked)} decoded images are unreadable, e.g.")
        details.extend(f"  {p}: {e}" for p, e in broken[:5])

    if reader.test_only:
        sizes = f"test {len(splits.test):,}"
    elif reader.val_is_test:
        sizes = f"train {len(splits.train):,} / test (also val) {len(splits.test):,}"
    else:
        sizes = "train / val / test " + " / ".join(f"{len(part):,}" for part in splits)
    summary = f"{len(names_of)} classes; {sizes}; {len(checked)} images decoded (CoOp: {source.published})"
    return Report(name, CORRUPT if details else OK, summary, details)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clipbayes.datasets.check",
                                     description="Check the CoOp benchmark datasets under a data root.")
    parser.add_argument("--root", required=True, help="the data root (DATASET.ROOT / train.py --root)")
    parser.add_argument("--dataset", nargs="+", action="extend", default=[], metavar="NAME",
                        help="datasets to check (registry, yaml or folder name, e.g. OxfordPets, dtd, "
                             "imagenet-sketch); default: survey all")
    parser.add_argument("--verify", type=int, default=100, metavar="N",
                        help="images to decode per dataset (-1 = all, 0 = none; default 100)")
    args = parser.parse_args(argv)

    if not os.path.isdir(args.root):
        print(f"data root {args.root} is not a folder")
        return 1
    try:
        requested = [lookup(n).name for n in args.dataset]
    except KeyError as err:
        parser.error(str(err.args[0]))
    names = list(dict.fromkeys(requested)) or list(SOURCES)
    failed = False
    quiet, cache.QUIET = cache.QUIET, True
    try:
        for name in names:
            report = check_dataset(args.root, name, args.verify)
            print(f"[{report.status:<7}] {name} ({SOURCES[name].folder}): {report.summary}")
            for line in report.details:
                print(f"    {line}")
            if report.status in (MISSING, CORRUPT) or (requested and report.status == ABSENT):
                failed = True
    finally:
        cache.QUIET = quiet
    print("some requested datasets are missing or corrupt" if failed else "all checked datasets are usable")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
