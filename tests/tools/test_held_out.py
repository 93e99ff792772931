"""Held-out scoring: an inference CSV against the datalist's labels, fold models side by side, a paired site drop."""

from __future__ import annotations

import json
import math

import pytest

from brats_grading.components.data import DatasetError
from brats_grading.components.outputs import write_prediction_csv
from brats_grading.held_out import score_predictions, summarize_held_out

LABELS = [1, 1, 0, 0, 1, 0]
PROBS = [0.9, 0.35, 0.4, 0.1, 0.6, 0.2]
IDS = [f"case{i}" for i in range(len(LABELS))]


def _logits(probs):
    return [math.log(p / (1 - p)) for p in probs]


@pytest.fixture
def datalist(tmp_path):
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": [{"id": i, "label": y} for i, y in zip(IDS, LABELS, strict=True)]}))
    return path


def test_a_csv_is_scored_against_the_datalist_labels_at_the_threshold_it_was_written_with(tmp_path, datalist):
    csv_path = write_prediction_csv(tmp_path / "predictions.csv", IDS, PROBS, _logits(PROBS), threshold=0.3)
    held = score_predictions(csv_path, datalist)
    # called HGG at 0.3: 0.9, 0.35, 0.4 (an LGG case), 0.6 -> sensitivity 3/3, specificity 2/3
    assert held["threshold"] == 0.35  # the lowest P(HGG) the CSV called HGG
    assert held["sensitivity"] == 1.0 and held["specificity"] == pytest.approx(2 / 3)
    assert held["balanced_accuracy"] == pytest.approx(5 / 6)
    assert held["auc"] == pytest.approx(8 / 9)  # 8 of the 9 HGG-LGG pairs ranked right (0.35 < 0.4)
    assert held["num_cases"] == 6 and not held["collapsed"]
    low, high = held["auc_95ci"]
    assert 0.0 < low < 8 / 9 and high == 1.0  # six cases: a wide interval reaching a perfect ranking
    # the same probabilities from near-constant logits (a tiny temperature stretched them): collapsed
    flat = write_prediction_csv(tmp_path / "flat.csv", IDS, PROBS, [z * 1e-4 for z in _logits(PROBS)], threshold=0.3)
    assert score_predictions(flat, datalist)["collapsed"]


def test_a_case_outside_the_datalist_is_refused_by_name(tmp_path, datalist):
    csv_path = write_prediction_csv(tmp_path / "p.csv", ["stranger"], [0.5], [0.0])
    with pytest.raises(DatasetError, match="case 'stranger' is not in"):
        score_predictions(csv_path, datalist)


def test_fold_models_are_summarised_and_two_sites_of_the_same_cases_compared_paired(tmp_path, datalist):
    cv_dir = tmp_path / "cv"
    cv_dir.mkdir()
    perfect = [0.9, 0.8, 0.2, 0.1, 0.7, 0.3]  # AUC 1
    files = {
        0: write_prediction_csv(tmp_path / "f0.csv", IDS, PROBS, _logits(PROBS), threshold=0.3),
        1: write_prediction_csv(tmp_path / "f1.csv", IDS, perfect, _logits(perfect), threshold=0.5),
    }
    reference = summarize_held_out(cv_dir, "reference", files, datalist, thresholds={0: 0.3})
    assert reference["folds"][0]["threshold"] == 0.3  # the stored threshold, not the lowest called P(HGG)
    assert reference["folds"][1]["threshold"] == 0.7  # none given: the lowest P(HGG) its CSV called HGG
    assert reference["folds"][0]["auc"] == pytest.approx(8 / 9) and reference["folds"][1]["auc"] == 1.0
    assert reference["mean_std"]["auc"]["mean"] == pytest.approx((8 / 9 + 1) / 2)
    assert reference["mean_std"]["auc"]["std"] == pytest.approx((1 - 8 / 9) / math.sqrt(2))  # sample std, as the CV's
    average = [(a + b) / 2 for a, b in zip(PROBS, perfect, strict=True)]
    assert reference["case_probs"] == {c: pytest.approx(p) for c, p in zip(IDS, average, strict=True)}
    assert reference["fold_average"]["threshold"] == pytest.approx((0.3 + 0.7) / 2)  # median of two
    assert reference["num_cases"] == 6 and reference["num_hgg"] == 3
    assert "# Held-out set `reference`: 6 cases (3 HGG / 3 LGG)" in (cv_dir / "held_out_reference.md").read_text()

    worse = [0.3, 0.2, 0.6, 0.1, 0.7, 0.4]  # the same patients at another site, ranked worse
    shifted_files = {f: write_prediction_csv(tmp_path / f"s{f}.csv", IDS, worse, _logits(worse)) for f in (0, 1)}
    shifted = summarize_held_out(cv_dir, "shifted", shifted_files, datalist, compare_with="reference")
    assert shifted["versus"]["other"] == "reference"
    assert shifted["versus"]["difference"] == pytest.approx(shifted["fold_average"]["auc"] - 1.0)
    assert shifted["versus"]["difference"] < 0
    assert "Against held-out set `reference`" in (cv_dir / "held_out_shifted.md").read_text()

    with pytest.raises(DatasetError, match="held_out_elsewhere.json does not exist"):
        summarize_held_out(cv_dir, "again", shifted_files, datalist, compare_with="elsewhere")
    fewer = {0: write_prediction_csv(tmp_path / "few.csv", IDS[:4], worse[:4], _logits(worse[:4]))}
    with pytest.raises(DatasetError, match="hold different cases"):
        summarize_held_out(cv_dir, "fewer", fewer, datalist, compare_with="reference")
