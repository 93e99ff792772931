"""The demo refuses held-out cases that are not new (its scoring is tests/tools/test_held_out.py's)."""

from __future__ import annotations

import importlib.util

import pytest
from helpers import REPO

spec = importlib.util.spec_from_file_location("run_demo", REPO / "scripts" / "run_demo.py")
run_demo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_demo)


def test_demo_refuses_a_held_out_seed_equal_to_the_training_seed():
    with pytest.raises(SystemExit):
        run_demo.main(["--seed", "3", "--held-out-seed", "3"])
