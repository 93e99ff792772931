"""Components every bundle shares: data records, preprocessing, losses, metrics, reporting, handlers.

Their one source is ``src/brats_grading/components/`` in the repository. ``scripts/sync_components.py``
copies the modules each bundle imports into its ``scripts/common/``, so a bundle runs alone when copied
or zipped; a copy is generated, so edit the source and sync. A test fails when a copy drifts.
Modules here import each other relatively and depend only on the bundles' pip requirements.
"""
