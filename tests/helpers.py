"""Helpers the tests share: paths, importing a bundle's ``scripts`` package, running a bundle.

Every bundle names its component package ``scripts``; tests import one under a unique name with
:func:`import_bundle_scripts`, or run bundle code in a subprocess with :func:`run_in_bundle`.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "bundles"

#: seven graded cases (1 = HGG) and their P(HGG), small enough to check metrics by hand
LABELS = [1, 1, 1, 1, 0, 0, 0]
PROBS = [0.9, 0.8, 0.4, 0.7, 0.6, 0.2, 0.1]


def import_bundle_scripts(bundle: str, module: str | None = None) -> ModuleType:
    """Import ``bundles/<bundle>/scripts[.<module>]`` under the unique package name ``<bundle>_scripts``."""
    package = f"{bundle}_scripts"
    if package not in sys.modules:
        scripts_dir = BUNDLES / bundle / "scripts"
        spec = importlib.util.spec_from_file_location(
            package, scripts_dir / "__init__.py", submodule_search_locations=[str(scripts_dir)]
        )
        assert spec is not None and spec.loader is not None
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[package] = loaded
        spec.loader.exec_module(loaded)
    return importlib.import_module(f"{package}.{module}" if module else package)


def parsed_config_item(bundle_dir: Path, config: dict, key: str, **overrides):
    """``key`` of a bundle ``config`` parsed in this process, with ``overrides`` and the bundle's ``scripts``."""
    from monai.bundle import ConfigParser

    from brats_grading.components.bundle_env import bundle_importable

    parser = ConfigParser(config)
    parser.update({"bundle_root": str(bundle_dir), **overrides})
    with bundle_importable(bundle_dir):
        return parser.get_parsed_content(key, lazy=False)


def copy_bundle(name: str, destination: Path) -> Path:
    """Copy a bundle alone (as a user would unzip it), without caches or previous runs."""
    target = destination / name
    shutil.copytree(
        BUNDLES / name,
        target,
        ignore=shutil.ignore_patterns("__pycache__", "runs", "predictions", "*.pt", "*.ts", "*.operating_point.json"),
    )
    return target


def bundle_command(bundle_dir: Path, config_files: list[str], *overrides: str) -> tuple[list[str], dict]:
    """The command and environment of :func:`run_bundle`."""
    configs = "['" + "','".join(f"configs/{c}" for c in config_files) + "']"
    code = (
        "import sys; sys.modules['brats_grading'] = None; "
        f"sys.path = [p for p in sys.path if not p.startswith({str(REPO / 'src')!r})]; "
        "from monai.bundle.__main__ import *; import fire; fire.Fire()"
    )
    cmd = [sys.executable, "-c", code, "run", "--config_file", configs, "--logging_file", "configs/logging.conf"]
    cmd += list(overrides)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONHASHSEED"] = "0"
    return cmd, env


def last_line(text: str) -> str:
    """The last non-empty line of a log: the exception a failed run ended with, to lead the error message."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def failure_text(result: subprocess.CompletedProcess) -> str:
    """Why a subprocess failed, its last error line first (CI logs may show only the start of a failure)."""
    return (
        f"exit {result.returncode}: {last_line(result.stderr or result.stdout)}\n--- stdout\n{result.stdout[-3000:]}"
        f"\n--- stderr\n{result.stderr[-5000:]}"
    )


def run_bundle(
    bundle_dir: Path, config_files: list[str], *overrides: str, check: bool = True
) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run`` in the bundle folder, as the bundle README writes it.

    The repository is kept off ``sys.path`` and ``brats_grading`` is made unimportable, so the run
    proves the bundle is self-contained.
    """
    cmd, env = bundle_command(bundle_dir, config_files, *overrides)
    result = subprocess.run(cmd, cwd=bundle_dir, env=env, capture_output=True, text=True, timeout=1200)
    if check and result.returncode != 0:
        raise AssertionError(
            f"bundle run failed ({result.returncode}): {last_line(result.stderr)}\n{' '.join(cmd[3:])}"
            f"\n--- stdout\n{result.stdout[-4000:]}"
            f"\n--- stderr\n{result.stderr[-6000:]}"
        )
    return result


def interrupt_training(
    bundle_dir: Path, config_files: list[str], *overrides: str, signal_number: int, pause_at: str
) -> tuple[int, str]:
    """Start a bundle run and send it ``signal_number`` at a point it cannot pass before the signal lands.

    The run waits at ``pause_at`` ("<point>:<count>", see the components' ``fault_injection.py``), prints
    ``paused at <point> <count>``, and the signal is sent when that line appears: it stops the run exactly
    there, however loaded the machine is (timing a signal against a log line cannot promise that).
    Returns the exit status and the whole output.
    """
    cmd, env = bundle_command(bundle_dir, config_files, *overrides, "--log_interval", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env[PAUSE_VARIABLE] = pause_at
    process = subprocess.Popen(
        cmd, cwd=bundle_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    assert process.stdout is not None
    paused = f"paused at {pause_at.replace(':', ' ')}"
    for line in process.stdout:
        lines.append(line)
        if line.startswith(paused):
            process.send_signal(signal_number)
            break
    lines.extend(process.stdout)
    return process.wait(timeout=600), "".join(lines)


#: the environment variable of the components' pause points (``fault_injection.py``)
PAUSE_VARIABLE = "BRATS_GRADING_PAUSE_AT"


def run_evaluation(bundle_dir: Path, dataset_dir: Path, output_dir: Path, *overrides: str, fold: int = 0) -> Path:
    """Evaluate the newest training run of ``fold`` under ``output_dir``; return the new evaluation folder."""
    run_bundle(
        bundle_dir, ["train.json", "evaluate.json"], "--dataset_dir", str(dataset_dir), "--output_dir", str(output_dir),
        "--fold", str(fold), "--use_latest_run", "True", *overrides,
    )  # fmt: skip
    return sorted((output_dir / f"fold_{fold}").glob("eval_*"))[-1]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def only_run_dir(output_dir: Path, fold: int = 0, prefix: str = "run") -> Path:
    """The one ``<prefix>_*`` run folder of ``fold`` under ``output_dir``; fails when there are none or several."""
    runs = sorted((output_dir / f"fold_{fold}").glob(f"{prefix}_*"))
    assert len(runs) == 1, runs
    return runs[0]


BUNDLE_PRELUDE = """import sys, json, torch
from monai.bundle import ConfigParser


def bundle_parser(*configs, **overrides):
    \"\"\"A parser of the bundle's ``configs/<name>`` files with ``overrides`` applied.\"\"\"
    parser = ConfigParser()
    parser.read_config([f"configs/{c}" for c in configs])
    parser.update(overrides)
    return parser
"""


def run_in_bundle(bundle_dir: Path, code: str) -> dict:
    """Run ``code`` in a fresh process in the bundle folder, its ``scripts`` importable; return its last line as JSON.

    A separate process because every bundle names its package ``scripts``: one per process. The code can
    use ``bundle_parser("train.json", key=value)`` and ``ConfigParser``.
    """
    prelude = f"{BUNDLE_PRELUDE}\nsys.path.insert(0, {str(bundle_dir)!r})\n"
    result = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, cwd=bundle_dir)
    assert result.returncode == 0, failure_text(result)
    return json.loads(result.stdout.strip().splitlines()[-1])


#: tiny ResNet training for cross-validation tests: strided layout at 32^3, two epochs, no workers
TINY_CV = [
    "--layout", "strided", "--spatial_size", "[32,32,32]", "--batch_size", "2", "--num_workers", "0",
    "--accumulation_steps", "1", "--epochs", "2", "--drw_start_epoch", "1", "--ema_warmup_steps", "2",
    "--selection_fraction", "0.5",  # of 16 training cases: 8 choose the model, with 2 or more of each grade
]  # fmt: skip


def run_cross_validate(*args: str, check: bool = True, **popen) -> subprocess.CompletedProcess:
    """``scripts/cross_validate.py`` as a user runs it."""
    cmd = [sys.executable, str(REPO / "scripts" / "cross_validate.py"), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, **popen)
    if check and result.returncode != 0:
        raise AssertionError(
            f"cross_validate.py failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-4000:]}"
        )
    return result
