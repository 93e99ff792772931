"""Grading metrics against hand-computed values, the operating threshold, the collapse check, the selection score."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import LABELS, PROBS
from sklearn.metrics import roc_auc_score

from brats_grading.components.metrics import (
    auc_bootstrap_interval,
    choose_threshold,
    classification_metrics,
    collapse_reason,
    paired_auc_difference,
    selection_score,
)

# Threshold fixture, 6 HGG and 2 LGG as in BraTS (HGG when P >= t):
#   P      0.9 0.8 0.7 0.6 0.4 0.3 0.2 0.1
#   label   1   1   1   1   0   1   1   0
# Youden J = TPR - FPR: t=0.9 1/6, 0.8 2/6, 0.7 3/6, 0.6 4/6 - 0 = 2/3 (the maximum, unique),
#   0.4 4/6 - 1/2 = 1/6, 0.3 5/6 - 1/2 = 1/3, 0.2 1 - 1/2 = 1/2, 0.1 1 - 1 = 0.
# Macro F1: t=0.6 (TP 4, FN 2, TN 2, FP 0) (4/5 + 2/3) / 2 = 11/15 = 0.733;
#   t=0.2 (TP 6, FN 0, TN 1, FP 1) (12/13 + 2/3) / 2 = 31/39 = 0.795 (the maximum);
#   t=0.3 (TP 5, FN 1, TN 1, FP 1) (5/6 + 1/2) / 2 = 0.667; t=0.1 (all HGG) (6/7 + 0) / 2 = 0.429.
THRESHOLD_LABELS = [1, 1, 1, 1, 0, 1, 1, 0]
THRESHOLD_PROBS = [0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1]


def test_metrics_match_hand_computation():
    m = classification_metrics(LABELS, PROBS)
    # predictions at 0.5: 1 1 0 1 | 1 0 0 -> TP 3, FN 1, FP 1, TN 2
    assert (m["true_positives"], m["false_negatives"], m["false_positives"], m["true_negatives"]) == (3, 1, 1, 2)
    assert m["accuracy"] == pytest.approx(5 / 7)
    assert m["sensitivity"] == pytest.approx(3 / 4) and m["specificity"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 2 / 3) / 2)
    # AUC: pairs (pos, neg) ranked correctly: 0.9,0.8,0.7 beat all 3; 0.4 beats 0.2, 0.1 -> 11/12
    assert m["auc"] == pytest.approx(11 / 12)
    hgg_f1 = 2 * 0.75 * 0.75 / 1.5
    lgg_f1 = 2 * (2 / 3) * (2 / 3) / (4 / 3)
    assert m["per_class"]["HGG"]["f1"] == pytest.approx(hgg_f1)
    assert m["f1"] == pytest.approx((hgg_f1 + lgg_f1) / 2)
    assert m["per_class"]["LGG"]["support"] == 3


def test_metrics_at_the_operating_threshold_keep_the_figures_at_one_half_alongside():
    m = classification_metrics(LABELS, PROBS, threshold=0.35)
    # at 0.35: 1 1 1 1 | 1 0 0 -> TP 4, FP 1; at 0.5 (above): TP 3, FP 1
    assert m["threshold"] == 0.35 and m["true_positives"] == 4 and m["false_positives"] == 1
    assert m["at_0_5"]["true_positives"] == 3 and m["at_0_5"]["false_positives"] == 1


def test_selection_score_prefers_auc_and_breaks_ties_with_f1():
    assert selection_score(0.80, 0.1) > selection_score(0.7999, 1.0)
    assert selection_score(0.80, 0.6) > selection_score(0.80, 0.5)


def test_youden_threshold_is_the_hand_computed_cut_off():
    assert choose_threshold(THRESHOLD_LABELS, THRESHOLD_PROBS, rule="youden") == 0.6


def test_f1_threshold_maximises_macro_f1_over_the_observed_probabilities():
    assert choose_threshold(THRESHOLD_LABELS, THRESHOLD_PROBS, rule="f1") == 0.2


def test_fixed_rule_returns_the_fixed_threshold():
    assert choose_threshold(THRESHOLD_LABELS, THRESHOLD_PROBS, rule="fixed", fixed=0.35) == 0.35


@pytest.mark.parametrize("rule", ["youden", "f1"])
def test_one_class_labels_fall_back_to_the_fixed_threshold(rule):
    assert choose_threshold([1, 1, 1], [0.2, 0.6, 0.9], rule=rule, fixed=0.45) == 0.45


def test_an_unknown_threshold_rule_is_refused():
    with pytest.raises(ValueError, match="median"):
        choose_threshold(THRESHOLD_LABELS, THRESHOLD_PROBS, rule="median")


def test_constant_probabilities_are_a_collapse():
    reason = collapse_reason([0.7] * 6, threshold=0.5)
    assert reason is not None and "constant" in reason
    assert classification_metrics([0, 1, 0, 1, 0, 1], [0.7] * 6)["collapsed"] is True


def test_every_case_in_one_class_at_the_threshold_is_a_collapse():
    probs = [0.55, 0.6, 0.8, 0.9]  # spread well above the constant limit, all >= 0.5
    reason = collapse_reason(probs, threshold=0.5)
    assert reason is not None and "every one of 4 cases predicted HGG" in reason
    assert "predicted LGG" in collapse_reason(probs, threshold=0.95)


def test_a_healthy_model_is_not_collapsed():
    assert collapse_reason(PROBS, threshold=0.5) is None
    m = classification_metrics(LABELS, PROBS)
    assert m["collapsed"] is False and m["collapse_reason"] is None


def test_a_collapsed_epoch_scores_below_a_healthy_one_even_with_a_perfect_auc():
    collapsed = classification_metrics([0, 0, 1, 1], [0.55, 0.6, 0.8, 0.9])  # AUC 1, all HGG at 0.5
    healthy = classification_metrics([0, 1, 0, 1], [0.2, 0.4, 0.6, 0.8])  # AUC 0.75, mixed predictions
    assert collapsed["auc"] == 1.0 and collapsed["collapsed"] and not healthy["collapsed"]
    assert collapsed["selection_score"] < healthy["selection_score"]
    assert selection_score(1.0, 1.0, collapsed=True) < selection_score(0.5, 0.0)


def test_auc_bootstrap_interval_holds_the_estimate_and_narrows_with_more_cases():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 400)
    probs = np.clip(labels * 0.3 + rng.normal(0.35, 0.25, 400), 0, 1)
    small = auc_bootstrap_interval(labels[:40], probs[:40], resamples=500)
    large = auc_bootstrap_interval(labels, probs, resamples=500)
    assert small[0] <= classification_metrics(labels[:40], probs[:40])["auc"] <= small[1]
    assert large[1] - large[0] < small[1] - small[0]
    assert auc_bootstrap_interval(labels[:40], probs[:40], resamples=500) == small  # seeded
    with pytest.raises(ValueError, match="both classes"):
        auc_bootstrap_interval([1, 1, 1], [0.2, 0.5, 0.9])


def test_the_paired_auc_difference_is_the_difference_of_sklearns_aucs_with_a_paired_interval():
    rng = np.random.default_rng(3)
    labels = (rng.random(120) < 0.6).astype(int)
    shared = rng.normal(size=120)  # both models err on the same cases: what pairing removes
    strong = labels * 1.2 + shared + 0.3 * rng.normal(size=120)
    weak = labels * 0.9 + shared + 0.3 * rng.normal(size=120)
    paired = paired_auc_difference(labels, strong, weak, resamples=1000)
    expected = roc_auc_score(labels, strong) - roc_auc_score(labels, weak)
    assert paired["difference"] == pytest.approx(expected, abs=1e-12) and paired["num_cases"] == 120
    low, high = paired["ci"]
    assert low < paired["difference"] < high
    # paired: narrower than the marginal intervals, whose overlap would hide the difference
    marginal = [auc_bootstrap_interval(labels, s, resamples=1000) for s in (strong, weak)]
    assert high - low < min(h - lo for lo, h in marginal)
    assert marginal[0][0] < marginal[1][1] and low > 0  # the marginal intervals overlap; the paired one excludes 0
    assert paired_auc_difference(labels, strong, strong, resamples=200) == {
        "difference": 0.0, "ci": [0.0, 0.0], "p_two_sided": 1.0, "num_cases": 120
    }  # fmt: skip
    with pytest.raises(ValueError, match="same cases"):
        paired_auc_difference(labels, strong[:-1], weak)
