"""Import a bundle's own ``scripts`` package, as ``monai.bundle run`` does from inside the bundle folder.

Every bundle names its component package ``scripts``; using several bundles in one process (an ensemble's
members, the model-zoo checks) must not let one bundle's ``scripts`` answer for another's, so the modules
are dropped again on exit, and the caller's own ``scripts`` modules are put back.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["bundle_importable"]


def _scripts_modules() -> list[str]:
    return [name for name in sys.modules if name == "scripts" or name.startswith("scripts.")]


@contextlib.contextmanager
def bundle_importable(bundle_dir: str | Path) -> Iterator[Path]:
    """Put ``bundle_dir`` first on ``sys.path`` for the block; yield its resolved path."""
    folder = Path(bundle_dir).resolve()
    saved = {name: sys.modules.pop(name) for name in _scripts_modules()}
    sys.path.insert(0, str(folder))
    try:
        yield folder
    finally:
        sys.path.remove(str(folder))
        for name in _scripts_modules():
            del sys.modules[name]
        sys.modules.update(saved)
