"""Let MONAI Label start where torchvision cannot load (a CPU-only torch with PyPI's CUDA-linked torchvision).

MONAI Label imports ``torchvision.utils`` at start-up (for image grids of segmentation previews); a
classification task never calls it. When the real package fails to load, a stand-in module whose
functions raise is registered instead, so the failure is loud if anything ever does call it.
"""

from __future__ import annotations

import sys
import types

__all__ = ["ensure_torchvision"]


def _unavailable(*_args, **_kwargs):
    raise RuntimeError("torchvision could not be loaded with this torch build (see docs/deployment.md)")


def ensure_torchvision() -> bool:
    """Import torchvision, or register the stand-in; True when the real package loaded."""
    try:
        import torchvision.utils  # noqa: F401

        return True
    except (ImportError, OSError, RuntimeError):
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        package = types.ModuleType("torchvision")
        utils = types.ModuleType("torchvision.utils")
        utils.make_grid = utils.save_image = _unavailable
        package.utils = utils
        package.__path__ = []
        sys.modules.update({"torchvision": package, "torchvision.utils": utils})
        return False
