"""``python -m brats_grading.deploy -i CASE -o OUTPUT_DIR -m BUNDLE/models/model.ts``."""

from .app import main

main()
