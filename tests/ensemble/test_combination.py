"""Combination methods, stacking and diversity on fixed member probabilities, checked by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import import_bundle_scripts
from sklearn.linear_model import LogisticRegression

combination = import_bundle_scripts("ensemble", "combination")
diversity = import_bundle_scripts("ensemble", "diversity")
fitting = import_bundle_scripts("ensemble", "fitting")
common_data = import_bundle_scripts("ensemble", "common.data")
common_metrics = import_bundle_scripts("ensemble", "common.metrics")
reports = import_bundle_scripts("ensemble", "reports")

NAMES = ["a", "b", "c"]
#: four cases, three members
PROBS = np.array([[0.9, 0.6, 0.2], [0.4, 0.3, 0.8], [0.5, 0.7, 0.1], [0.2, 0.1, 0.3]])
LABELS = [1, 1, 0, 0]


def test_one_member_is_that_member():
    probs = PROBS[:, :1]
    for method in ("mean", "soft_vote"):
        scores, grades = combination.Combiner(method, ["a"], threshold=0.5)(probs)
        np.testing.assert_array_equal(scores, probs[:, 0])
        np.testing.assert_array_equal(grades, [1, 0, 1, 0])
    fraction, grades = combination.Combiner("majority_vote", ["a"], thresholds=[0.45])(probs)
    np.testing.assert_array_equal(fraction, [1, 0, 1, 0])
    np.testing.assert_array_equal(grades, [1, 0, 1, 0])


def test_weighted_mean_and_soft_vote():
    scores, grades = combination.Combiner("mean", NAMES, weights=[2, 1, 1])(PROBS)
    np.testing.assert_allclose(
        scores, [(1.8 + 0.6 + 0.2) / 4, (0.8 + 0.3 + 0.8) / 4, (1.0 + 0.7 + 0.1) / 4, (0.4 + 0.1 + 0.3) / 4]
    )
    np.testing.assert_array_equal(grades, [1, 0, 0, 0])  # 0.65, 0.475, 0.45, 0.2
    soft, _ = combination.Combiner("soft_vote", NAMES, weights=[2, 1, 1])(PROBS)  # soft voting ignores weights
    np.testing.assert_allclose(soft, [1.7 / 3, 0.5, 1.3 / 3, 0.2])
    equal, _ = combination.Combiner("mean", NAMES)(PROBS)
    np.testing.assert_allclose(equal, soft)


def test_majority_vote_uses_each_members_threshold_and_breaks_ties_by_the_mean():
    fraction, grades = combination.Combiner("majority_vote", NAMES, thresholds=[0.5, 0.5, 0.25])(PROBS)
    # votes: case 0: 1,1,0 ; case 1: 0,0,1 ; case 2: 1,1,0 ; case 3: 0,0,1
    np.testing.assert_allclose(fraction, [2 / 3, 1 / 3, 2 / 3, 1 / 3])
    np.testing.assert_array_equal(grades, [1, 0, 1, 0])
    two = combination.Combiner("majority_vote", ["a", "b"], thresholds=[0.5, 0.5])
    fraction, grades = two(np.array([[0.9, 0.3], [0.55, 0.1]]))  # both 1:1 ties; means 0.6 and 0.325
    np.testing.assert_allclose(fraction, [0.5, 0.5])
    np.testing.assert_array_equal(grades, [1, 0])


def test_stacking_is_sklearns_logistic_regression_stored_as_json(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 40)
    probs = np.clip(0.5 + 0.3 * (labels[:, None] - 0.5) + rng.normal(0, 0.2, (40, 3)), 0.01, 0.99)
    model = combination.fit_stacking(NAMES, probs, labels)
    reference = LogisticRegression(class_weight="balanced", max_iter=1000).fit(
        combination.member_log_odds(probs), labels
    )
    np.testing.assert_allclose(model.predict(probs), reference.predict_proba(combination.member_log_odds(probs))[:, 1])
    path = model.to_json(tmp_path / "stacking.json")
    content = json.loads(path.read_text())
    assert content["members"] == NAMES and len(content["coef"]) == 3
    loaded = combination.StackingModel.from_json(path, NAMES)
    scores, grades = combination.Combiner("stacking", NAMES, stacking=loaded)(probs)
    np.testing.assert_allclose(scores, model.predict(probs))
    np.testing.assert_array_equal(grades, scores >= 0.5)
    with pytest.raises(ValueError, match=r"fitted on members \['a', 'b', 'c'\]"):
        combination.StackingModel.from_json(path, ["a", "c", "b"])


def test_stacking_by_hand_on_known_coefficients():
    model = combination.StackingModel(["a", "b"], [1.0, 2.0], -0.5)
    p = np.array([[0.5, 0.5], [np.exp(1) / (1 + np.exp(1)), 0.5]])  # log-odds (0, 0) and (1, 0)
    np.testing.assert_allclose(model.predict(p), [1 / (1 + np.exp(0.5)), 1 / (1 + np.exp(-0.5))])


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="method 'median'"):
        combination.Combiner("median", NAMES)
    with pytest.raises(ValueError, match="weights"):
        combination.Combiner("mean", NAMES, weights=[1, 1])
    with pytest.raises(ValueError, match="stacking_file"):
        combination.Combiner("stacking", NAMES)
    with pytest.raises(ValueError, match=r"shape \(cases, 3\)"):
        combination.Combiner("mean", NAMES)(PROBS[:, :2])


def test_diversity_by_hand():
    labels = [1, 1, 0, 0, 1]
    probs = np.array([[0.9, 0.8], [0.2, 0.7], [0.6, 0.1], [0.1, 0.2], [0.8, 0.3]])
    report = diversity.diversity_report(["x", "y"], labels, probs, [0.5, 0.5])
    pair = report["pairs"][0]
    # grades x: 1,0,1,0,1  y: 1,1,0,0,0 -> disagree on cases 1, 2, 4
    assert pair["disagreement"] == pytest.approx(3 / 5)
    # correct x: T,F,F,T,T  y: T,T,T,T,F -> n11 = 2, n00 = 0, n10 = 1, n01 = 2 -> Q = (0 - 2) / (0 + 2) = -1
    assert pair["q_statistic"] == pytest.approx(-1.0)
    assert pair["counts"] == {"both_right": 2, "both_wrong": 0, "only_first_right": 1, "only_second_right": 2}
    assert "| x / y | 0.600 | -1.000 | 2 / 0 / 1 / 2 |" in diversity.diversity_markdown(report)
    errors = np.array(labels)[:, None] - probs
    assert pair["error_correlation"] == pytest.approx(np.corrcoef(errors[:, 0], errors[:, 1])[0, 1])
    assert report["recall"]["x"] == {"HGG": pytest.approx(2 / 3), "LGG": pytest.approx(1 / 2)}
    assert report["recall"]["y"] == {"HGG": pytest.approx(2 / 3), "LGG": 1.0}
    assert diversity.q_statistic([True, True], [True, True]) is None


def _oof_files(tmp_path, folds: dict[str, int], rows: list[tuple]) -> tuple:
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": [{"id": i, "label": 1, "fold": f} for i, f in folds.items()]}))
    oof = tmp_path / "oof.csv"
    lines = ["id,fold,label,prob_hgg,logit"] + [",".join(str(v) for v in row) for row in rows]
    oof.write_text("\n".join(lines) + "\n")
    return datalist, oof


def test_stacking_refuses_in_fold_predictions(tmp_path):
    datalist, oof = _oof_files(
        tmp_path, {"c1": 0, "c2": 1}, [("c1", 0, 1, 0.8, 1.4), ("c2", 0, 1, 0.7, 0.8)]
    )  # c2 predicted by the fold-0 model, which trained on it
    members = [{"name": "a", "oof_predictions": str(oof)}]
    with pytest.raises(common_data.DatasetError, match=r"'c2' was predicted by the fold-0 model, which trained on it"):
        fitting.fit_from_out_of_fold(members, datalist, tmp_path / "stacking.json", tmp_path / "report")
    assert not (tmp_path / "stacking.json").exists()


def test_stacking_refuses_predictions_without_folds_and_duplicates(tmp_path):
    datalist, oof = _oof_files(tmp_path, {"c1": 0}, [("c1", 0, 1, 0.8, 1.4), ("c1", 0, 1, 0.8, 1.4)])
    with pytest.raises(common_data.DatasetError, match="'c1' is predicted more than once"):
        fitting.out_of_fold_table([{"name": "a", "oof_predictions": str(oof)}], datalist)
    plain = tmp_path / "predictions.csv"
    plain.write_text("id,prob_hgg,predicted_grade,logit\nc1,0.8,HGG,1.4\n")
    with pytest.raises(common_data.DatasetError, match=r"predictions.csv: missing column\(s\) \['fold', 'label'\]"):
        fitting.out_of_fold_table([{"name": "a", "oof_predictions": str(plain)}], datalist)


def test_out_of_fold_fit_writes_nested_stacking_and_every_method(tmp_path):
    rng = np.random.default_rng(1)
    ids = [f"c{i}" for i in range(30)]
    folds = {c: i % 3 for i, c in enumerate(ids)}
    labels = [int(i % 4 != 0) for i in range(30)]
    datalist = tmp_path / "datalist.json"
    datalist.write_text(
        json.dumps({"training": [{"id": c, "label": y, "fold": folds[c]} for c, y in zip(ids, labels, strict=True)]})
    )
    members = []
    for name, noise in (("good", 0.15), ("noisy", 0.45)):
        probs = np.clip(np.array(labels) * 0.4 + 0.3 + rng.normal(0, noise, 30), 0.01, 0.99)
        path = tmp_path / f"{name}.csv"
        rows = [f"{c},{folds[c]},{y},{float(p)!r},0.0,0.5" for c, y, p in zip(ids, labels, probs, strict=True)]
        path.write_text("id,fold,label,prob_hgg,logit,threshold\n" + "\n".join(rows) + "\n")
        members.append({"name": name, "oof_predictions": str(path)})
    stacking_file = tmp_path / "models" / "stacking.json"
    stacking_file.parent.mkdir()
    stacking_file.write_text("{}")
    model = fitting.fit_from_out_of_fold(members, datalist, stacking_file, tmp_path / "report")
    assert json.loads((tmp_path / "models" / "stacking.previous.json").read_text()) == {}  # kept, not lost
    assert json.loads(stacking_file.read_text())["coef"] == model.coef.tolist()
    assert model.coef[0] > model.coef[1]  # the better member weighs more
    rows = json.loads((tmp_path / "report" / "ensemble_metrics.json").read_text())["rows"]
    methods = {"mean", "soft_vote", "majority_vote", "stacking (nested)", "mean, fitted weights (nested)"}
    assert set(rows) == {"good", "noisy"} | methods
    fitted = json.loads(stacking_file.read_text())["mean_weights"]
    table = fitting.out_of_fold_table(members, datalist)
    assert fitted == combination.fit_weights(table["probs"], table["labels"]).tolist()
    assert all(r["num_cases"] == 30 for r in rows.values())
    assert (tmp_path / "report" / "diversity.md").is_file() and (
        tmp_path / "report" / "plots" / "roc_members.png"
    ).is_file()


def test_the_comparison_says_whether_its_members_selected_on_the_scored_cases(tmp_path):
    """Selection-free only when every member's CV says so; otherwise in-sample, naming the member."""
    ids = [f"c{i}" for i in range(12)]
    labels = [int(i % 3 != 0) for i in range(12)]
    datalist = tmp_path / "datalist.json"
    records = [{"id": c, "label": y, "fold": i % 4} for i, (c, y) in enumerate(zip(ids, labels, strict=True))]
    datalist.write_text(json.dumps({"training": records}))

    def member(name: str, selection_free: bool | None) -> dict:
        folder = tmp_path / name
        folder.mkdir()
        rows = [
            f"{r['id']},{r['fold']},{r['label']},{0.2 + 0.6 * r['label'] - 0.01 * k!r},0.0,0.5"
            for k, r in enumerate(records)
        ]
        (folder / "oof_predictions.csv").write_text("id,fold,label,prob_hgg,logit,threshold\n" + "\n".join(rows) + "\n")
        if selection_free is not None:
            (folder / "cv_summary.json").write_text(json.dumps({"selection_free": selection_free}))
        return {"name": name, "oof_predictions": str(folder / "oof_predictions.csv")}

    def title(members: list[dict], report: str) -> str:
        fitting.fit_from_out_of_fold(members, datalist, tmp_path / f"{report}.json", tmp_path / report)
        return (tmp_path / report / "ensemble_metrics.md").read_text().splitlines()[0]

    honest, leaky, unrecorded = member("honest", True), member("leaky", False), member("unrecorded", None)
    assert title([honest, honest], "both_free") == "# Out-of-fold comparison (4 folds, selection-free)"
    mixed = title([honest, leaky, unrecorded], "mixed")
    assert "in-sample: leaky chose temperature and threshold on these cases" in mixed
    assert "unrecorded without a cv_summary.json" in mixed and "honest" not in mixed
    fitted_on = json.loads((tmp_path / "mixed.json").read_text())["fitted_on"]
    assert fitted_on["selection_free"] == {"honest": True, "leaky": False, "unrecorded": None}


def test_fitted_weights_drop_a_member_without_information_and_keep_equal_weights_on_ties():
    rng = np.random.default_rng(3)
    labels = np.array([1] * 30 + [0] * 30)
    informative = np.clip(0.5 + 0.25 * (labels - 0.5) * 2 + rng.normal(0, 0.15, 60), 0.01, 0.99)
    noise = rng.uniform(0.3, 0.7, 60)
    weights = combination.fit_weights(np.stack([informative, noise], axis=1), labels)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(labels, np.stack([informative, noise], axis=1) @ weights) >= roc_auc_score(labels, informative)
    assert weights[1] < 0.5
    same = combination.fit_weights(np.stack([informative, informative, informative], axis=1), labels)
    np.testing.assert_allclose(sorted(same), [0.3, 0.3, 0.4])  # a grid point nearest equal thirds (step 0.1)
    np.testing.assert_allclose(weights.sum(), 1.0)


def test_fitted_weights_are_read_from_the_stacking_file(tmp_path):
    path = combination.StackingModel(["a", "b"], [1.0, 0.0], 0.0, {"mean_weights": [0.8, 0.2]}).to_json(
        tmp_path / "s.json"
    )
    assert combination.read_fitted_weights(path, ["a", "b"]) == [0.8, 0.2]
    bare = combination.StackingModel(["a", "b"], [1.0, 0.0], 0.0).to_json(tmp_path / "bare.json")
    with pytest.raises(ValueError, match="no fitted 'mean_weights'"):
        combination.read_fitted_weights(bare, ["a", "b"])


def _noise_members(tmp_path, num_members: int = 8, num_cases: int = 40) -> tuple:
    """Members that know nothing (uniform P(HGG)), over 4 folds: only an in-sample stacking fit scores well."""
    rng = np.random.default_rng(5)
    ids = [f"c{i:02d}" for i in range(num_cases)]
    labels = [int(i % 3 != 0) for i in range(num_cases)]
    folds = {c: i % 4 for i, c in enumerate(ids)}
    datalist = tmp_path / "datalist.json"
    datalist.write_text(
        json.dumps({"training": [{"id": c, "label": y, "fold": folds[c]} for c, y in zip(ids, labels, strict=True)]})
    )
    members = []
    for k in range(num_members):
        path = tmp_path / f"m{k}.csv"
        probs = rng.uniform(0.05, 0.95, num_cases)
        rows = [f"{c},{folds[c]},{y},{float(p)!r},0.0,0.5" for c, y, p in zip(ids, labels, probs, strict=True)]
        path.write_text("id,fold,label,prob_hgg,logit,threshold\n" + "\n".join(rows) + "\n")
        members.append({"name": f"m{k}", "oof_predictions": str(path)})
    return datalist, members


def test_stackings_figure_is_nested_each_fold_scored_by_a_fit_without_it(tmp_path):
    from sklearn.metrics import roc_auc_score

    datalist, members = _noise_members(tmp_path)
    fitting.fit_from_out_of_fold(members, datalist, tmp_path / "stacking.json", tmp_path / "report")
    reported = json.loads((tmp_path / "report" / "ensemble_metrics.json").read_text())["rows"]["stacking (nested)"]
    table = fitting.out_of_fold_table(members, datalist)
    names, probs, labels = table["names"], table["probs"], np.asarray(table["labels"])
    nested = np.zeros(len(labels))
    for fold in range(4):
        inside = table["folds"] == fold
        nested[inside] = combination.fit_stacking(names, probs[~inside], labels[~inside]).predict(probs[inside])
    in_sample = combination.fit_stacking(names, probs, labels).predict(probs)
    assert reported["auc"] == pytest.approx(roc_auc_score(labels, nested), abs=1e-12)
    # the two fits tell apart: on members that know nothing, only the in-sample one looks skilled
    assert roc_auc_score(labels, in_sample) > 0.75 and reported["auc"] < 0.65


def test_every_combination_is_compared_with_the_best_member_on_the_same_cases(tmp_path):
    rng = np.random.default_rng(2)
    labels = (rng.random(80) < 0.7).astype(int)
    probs = np.clip(np.stack([0.5 + 0.3 * (labels - 0.5) + rng.normal(0, s, 80) for s in (0.2, 0.4)], 1), 0.01, 0.99)
    ensembles = {"best itself": (probs[:, 0], probs[:, 0] >= 0.5), "mean": (probs.mean(1), probs.mean(1) >= 0.5)}
    comparison = reports.compare(labels, ["good", "noisy"], probs, np.full(2, 0.5), ensembles)
    assert comparison["best_member"] == "good"
    same = comparison["versus_best_member"]["best itself"]
    assert same["difference"] == 0.0 and same["ci"] == [0.0, 0.0]
    mean = comparison["versus_best_member"]["mean"]
    assert mean == common_metrics.paired_auc_difference(labels, probs.mean(1), probs[:, 0])
    markdown = reports.comparison_markdown(comparison, "t")
    assert f"| mean | {mean['difference']:+.4f} | {mean['ci'][0]:+.4f} to {mean['ci'][1]:+.4f} |" in markdown


def test_an_evaluation_compares_stacking_and_fitted_weights_only_when_they_were_fitted(tmp_path):
    stacking_file = tmp_path / "stacking.json"
    assert list(combination.compared_combiners(NAMES, stacking_file)) == ["mean", "majority_vote"]
    combination.StackingModel(NAMES, [1.0, 0.5, 0.0], -0.2, {"mean_weights": [0.6, 0.4, 0.0]}).to_json(stacking_file)
    compared = combination.compared_combiners(NAMES, stacking_file, threshold=0.4)
    assert list(compared) == ["mean", "majority_vote", "stacking", "mean, fitted weights"]
    scores, grades = compared["mean, fitted weights"](PROBS)
    np.testing.assert_allclose(scores, PROBS @ np.array([0.6, 0.4, 0.0]))
    np.testing.assert_array_equal(grades, (scores >= 0.4).astype(int))
    np.testing.assert_allclose(
        compared["stacking"](PROBS)[0], combination.StackingModel.from_json(stacking_file).predict(PROBS)
    )
