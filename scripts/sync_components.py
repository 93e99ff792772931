#!/usr/bin/env python
"""Copy the shared bundle components each bundle uses into its scripts/common/ (or check they are in sync).

The source of truth is src/brats_grading/components/. Each bundle gets byte-identical copies of the
modules its configs and scripts import, directly or not (``brats_grading.import_closure``), so that it
runs alone (zipped, copied, published) with only its pip requirements and carries nothing it never runs.
Run without options after editing a component or a config; --check exits 1 when any copy differs,
is missing or is not needed (used by the tests).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
from pathlib import Path

from brats_grading.import_closure import bundle_closure

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "brats_grading" / "components"
BUNDLES = ROOT / "bundles"


def bundle_targets() -> list[Path]:
    """Every bundle folder (one with configs/) gets ``scripts/common``."""
    return sorted(p / "scripts" / "common" for p in BUNDLES.iterdir() if (p / "configs").is_dir())


def _python_files(folder: Path) -> set[str]:
    """Paths (relative, POSIX) of every ``.py`` file under ``folder``, sub-packages included."""
    if not folder.is_dir():
        return set()
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*.py") if "__pycache__" not in p.parts}


def source_files(target: Path) -> list[str]:
    """The component files the bundle holding ``target`` (its ``scripts/common``) imports."""
    return sorted(bundle_closure(SOURCE, target.parents[1]))


def differences(target: Path) -> list[str]:
    """Relative paths of files missing, differing, or extra in ``target`` compared with what its bundle uses."""
    wanted = set(source_files(target))
    present = _python_files(target)
    problems = sorted(present - wanted)
    for name in sorted(wanted):
        if name not in present or not filecmp.cmp(SOURCE / name, target / name, shallow=False):
            problems.append(name)
    return problems


def sync(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    wanted = source_files(target)
    for stale in _python_files(target) - set(wanted):
        (target / stale).unlink()
    for name in wanted:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SOURCE / name, target / name)


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report copies that differ; exit 1 if any")
    args = parser.parse_args(argv)
    status = 0
    for target in bundle_targets():
        problems = differences(target)
        if args.check:
            if problems:
                print(f"{_shown(target)} out of sync: {', '.join(problems)}")
                status = 1
        elif problems:
            sync(target)
            print(f"synced {_shown(target)} ({', '.join(problems)})")
    return status


if __name__ == "__main__":
    sys.exit(main())
