"""Point the zoo-style tests at this repository's bundles (in the zoo they run from its root, on ``models/``)."""

import os
from pathlib import Path

os.environ.setdefault("ZOO_MODELS_DIR", str(Path(__file__).resolve().parents[3] / "bundles"))
