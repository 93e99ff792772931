"""run_folder.save_run_config: the resolved values of a run, without running its statement lists."""

from __future__ import annotations

import json
from pathlib import Path

from monai.bundle import ConfigParser

from brats_grading.components import run_folder


def test_saving_the_run_config_resolves_values_but_never_runs_a_run_id(tmp_path):
    marker = tmp_path / "side_effect.txt"
    parser = ConfigParser(
        {
            "epochs": "$2 * 3",
            "modalities": ["t1", "flair"],
            "make_datalist": [f"$open({str(marker)!r}, 'w').write('ran')"],
            "run": [f"$save_run_config({str(tmp_path)!r})"],
        },
        globals={"save_run_config": run_folder.save_run_config},
    )
    path = parser.get_parsed_content("run#0")
    saved = json.loads(Path(path).read_text())
    assert saved["resolved"]["epochs"] == 6 and saved["resolved"]["modalities"] == ["t1", "flair"]
    assert "make_datalist" not in saved["resolved"] and "make_datalist" in saved["config"]
    assert not marker.exists()
