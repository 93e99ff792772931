"""Components of the ``swin_unetr_cls`` bundle: a Swin UNETR encoder classifier and its SSL weight loader.

``monai.bundle`` puts the bundle root on ``sys.path`` and imports this package as the top-level name
``scripts``; the modules therefore refer to each other only through relative imports so that the same
files also work when loaded under another name (as the tests and ``scripts/benchmark.py`` do).
"""
