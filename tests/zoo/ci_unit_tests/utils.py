"""This project's stand-in for the model zoo's ``ci/unit_tests/utils.py``: ``check_workflow`` with the zoo's
behaviour (initialize, check properties, run, finalize), so the zoo-style test files here run unchanged."""

from __future__ import annotations


def check_workflow(workflow, check_properties: bool = False) -> None:
    """Initialize, optionally check the workflow's properties (raising on any missing), run, finalize."""
    workflow.initialize()
    if check_properties:
        check_result = workflow.check_properties()
        if check_result is not None and len(check_result) > 0:
            raise ValueError(f"check properties for workflow failed: {check_result}")
    workflow.run()
    workflow.finalize()
