"""Which cases train, choose and score a fold: the inner selection split and what a run says about it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from brats_grading.components.data import DatasetError
from brats_grading.components.metrics import choose_threshold
from brats_grading.components.selection import case_roles, evaluation_case_roles, split_fold


@pytest.fixture
def datalist(tmp_path):
    """40 cases in 5 folds (30 HGG, 10 LGG; each fold 6 HGG + 2 LGG); the files need not exist to split."""
    entries = []
    for i in range(40):
        label = int(i % 4 != 0)
        image = [f"case{i:02d}/{m}.nii.gz" for m in ("t1", "t1ce", "t2", "flair")]
        entries.append({"id": f"case{i:02d}", "image": image, "label": label, "fold": i % 5})
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"channel_order": ["t1", "t1ce", "t2", "flair"], "training": entries}))
    return path


def _ids(records) -> set[str]:
    return {r["id"] for r in records}


def test_selection_cases_come_from_the_training_folds_stratified_and_leave_the_fold_to_be_scored(datalist):
    split = split_fold(datalist, datalist.parent, 2, ["t1", "flair"], selection_fraction=0.25, seed=42)
    entries = json.loads(datalist.read_text())["training"]
    fold = {e["id"] for e in entries if e["fold"] == 2}
    assert _ids(split["scored"]) == fold
    assert _ids(split["train"]) | _ids(split["selection"]) == {e["id"] for e in entries} - fold
    assert not _ids(split["train"]) & _ids(split["selection"])
    assert len(split["selection"]) == 8 and sum(r["label"] == 0 for r in split["selection"]) == 2  # 8 LGG of 32 -> 2
    assert all(len(r["image"]) == 2 for r in split["selection"])
    again = split_fold(datalist, datalist.parent, 2, ["t1", "flair"], selection_fraction=0.25, seed=42)
    assert _ids(again["selection"]) == _ids(split["selection"])  # the same cases on every call (resume, evaluate)
    other_fold = split_fold(datalist, datalist.parent, 3, ["t1", "flair"], selection_fraction=0.25, seed=42)
    assert _ids(other_fold["scored"]).isdisjoint(_ids(other_fold["selection"]))


def test_without_a_selection_fraction_the_validation_fold_chooses_and_is_scored(datalist):
    split = split_fold(datalist, datalist.parent, 0, ["t1"], selection_fraction=0.0)
    assert split["selection"] == split["scored"] and len(split["train"]) == 32
    roles = case_roles(split)
    assert roles["selection_is_scored"] and roles["num_train"] == 32
    roles = case_roles(split_fold(datalist, datalist.parent, 0, ["t1"], selection_fraction=0.25))
    assert not roles["selection_is_scored"] and not set(roles["selection_ids"]) & set(roles["scored_ids"])


def test_a_selection_split_too_small_or_out_of_range_is_refused_by_name(datalist):
    with pytest.raises(DatasetError, match=r"selection_fraction 0.05 holds out 1 LGG case\(s\) of 32"):
        split_fold(datalist, datalist.parent, 0, ["t1"], selection_fraction=0.05)
    for bad in (0.6, -0.1, True):
        with pytest.raises(DatasetError, match="selection_fraction must be a number in \\[0, 0.5\\]"):
            split_fold(datalist, datalist.parent, 0, ["t1"], selection_fraction=bad)


def test_an_evaluation_counts_the_scored_cases_that_chose_its_model(tmp_path):
    checkpoint = tmp_path / "best.pt"
    torch.save(
        {"model": {}, "metrics": {"auc": 0.9, "balanced_accuracy": 0.8, "selection_ids": ["a", "b"]}}, checkpoint
    )
    roles = evaluation_case_roles([{"id": "b"}, {"id": "c"}], checkpoint)
    assert roles["overlap"] == 1 and roles["selection"]["num_cases"] == 2
    assert roles["selection"]["balanced_accuracy"] == 0.8
    published = tmp_path / "model.pt"  # a plain state dict: what chose it is in its operating-point file
    torch.save({}, published)
    (tmp_path / "model.operating_point.json").write_text(json.dumps({"threshold": 0.7, "selection_ids": ["a"]}))
    roles = evaluation_case_roles([{"id": "c"}], published)
    assert roles["overlap"] == 0 and roles["selection"]["threshold"] == 0.7
    torch.save({}, tmp_path / "old.pt")
    assert evaluation_case_roles([{"id": "c"}], tmp_path / "old.pt")["overlap"] is None


def test_the_prior_threshold_reads_no_case_and_is_near_best_for_balanced_accuracy():
    labels, probs = [1, 1, 1, 0], [0.9, 0.4, 0.8, 0.3]
    assert choose_threshold(labels, probs, rule="prior", hgg_prior=0.7) == 0.7
    assert choose_threshold(labels, probs[::-1], rule="prior", hgg_prior=0.7) == 0.7
    assert choose_threshold(labels, probs, rule="prior") == 0.75  # the labels' own share without a prior
    with pytest.raises(ValueError, match="hgg_prior"):
        choose_threshold(labels, probs, rule="prior", hgg_prior=1.0)
    # calibrated P(HGG) at prevalence 0.75: the cut at 0.75 is as good as the best cut found on the cases
    rng = np.random.default_rng(0)
    y = (rng.random(20000) < 0.75).astype(int)
    log_odds = np.log(3.0) + 1.5 * rng.normal(size=y.size) + 2.0 * (y - 0.75)  # any score; calibrate it below
    from sklearn.linear_model import LogisticRegression

    p = LogisticRegression().fit(log_odds[:, None], y).predict_proba(log_odds[:, None])[:, 1]
    best = choose_threshold(y, p, rule="youden")
    at_prior = balanced_accuracy_score(y, p >= 0.75)
    assert at_prior >= balanced_accuracy_score(y, p >= best) - 0.005
    assert at_prior > balanced_accuracy_score(y, p >= 0.5) + 0.02
