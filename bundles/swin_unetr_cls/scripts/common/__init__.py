"""Bundle components shared by every bundle (data, preprocessing, handlers, reporting, run folders).

This folder is the single source of truth. ``scripts/sync_components.py`` copies it into each
bundle's ``scripts/common/`` so that a bundle stays self-contained when copied or zipped alone;
``tests/test_vendored_components.py`` fails when a copy drifts from this source.
Modules here import each other relatively and depend only on the bundles' pip requirements.
"""
