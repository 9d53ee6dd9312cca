"""Calibration and out-of-scope scores on examples small enough to compute by hand."""
import numpy as np
import pytest

from rasa_kd.distill.confidence import (
    confidence_scores,
    ece_if_calibrated,
    expected_calibration_error,
    fit_temperature,
    read_out_of_scope,
    threshold_keeping,
)
from rasa_kd.errors import DataError


def test_ece_by_hand():
    # Two bins used (of 10): [0.9, 1.0] holds 0.95, 0.95, 0.95, 0.95 with 3 correct: |0.75 - 0.95| = 0.2;
    # [0.6, 0.7) holds 0.65, 0.65 with 1 correct: |0.5 - 0.65| = 0.15. Weighted: 4/6 * 0.2 + 2/6 * 0.15.
    confidence = [0.95, 0.95, 0.95, 0.95, 0.65, 0.65]
    correct = [True, True, True, False, True, False]
    assert expected_calibration_error(confidence, correct, bins=10) == pytest.approx(4 / 6 * 0.2 + 2 / 6 * 0.15)


def test_ece_is_zero_when_confidence_matches_accuracy_and_one_when_always_wrong():
    assert expected_calibration_error([0.75] * 4, [True, True, True, False], bins=10) == pytest.approx(0.0)
    assert expected_calibration_error([1.0] * 3, [False] * 3) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="3 confidences but 2"):
        expected_calibration_error([0.1, 0.2, 0.3], [True, False])


def test_a_calibrated_models_ece_floor_shrinks_with_the_test_set():
    # Certain answers are always right: no floor. At confidence 0.5 in one bin the ECE is |k/n - 0.5| with
    # k ~ Binomial(n, 0.5), whose mean is about 0.5 * sqrt(2 / (pi n)): 0.040 for 100 messages, 0.010 for 1,600.
    assert ece_if_calibrated([1.0] * 50) == {"mean": 0.0, "p95": 0.0}
    small, large = ece_if_calibrated([0.5] * 100), ece_if_calibrated([0.5] * 1600)
    assert small["mean"] == pytest.approx(0.5 * np.sqrt(2 / (np.pi * 100)), rel=0.15)
    assert large["mean"] == pytest.approx(0.5 * np.sqrt(2 / (np.pi * 1600)), rel=0.15)
    assert small["p95"] > small["mean"] and ece_if_calibrated([0.5] * 100) == small  # seeded: the same every time
    assert confidence_scores([0.5] * 100, [True, False] * 50)["ece_if_calibrated"] == small


def test_the_threshold_keeps_95_percent_of_in_scope_answers():
    confidence = np.arange(1, 21) / 20.0  # 0.05 ... 1.00
    threshold = threshold_keeping(confidence, 0.95)
    assert threshold == pytest.approx(0.10)  # drops only 0.05: 19 of 20 kept
    assert (confidence >= threshold).mean() == pytest.approx(0.95)
    assert threshold_keeping(confidence, 1.0) == pytest.approx(0.05)
    assert threshold_keeping(confidence, 0.5) == pytest.approx(0.55)


def test_out_of_scope_scores_by_hand():
    in_scope = [0.9, 0.8, 0.7, 0.6]
    correct = [True, True, False, True]
    out_of_scope = [0.65, 0.5, 0.3]
    scores = confidence_scores(in_scope, correct, out_of_scope, keep=0.75)
    # keep 3 of 4: threshold 0.7; caught: 0.65, 0.5, 0.3 (all three); kept and correct: 0.9, 0.8.
    assert scores["threshold"] == pytest.approx(0.7)
    assert scores["in_scope_kept"] == pytest.approx(0.75)
    assert scores["in_scope_accuracy_at_threshold"] == pytest.approx(0.5)
    assert scores["out_of_scope_recall"] == pytest.approx(1.0)
    # AUROC: of the 12 (in, out) pairs the in-scope one is higher in all but 0.6 < 0.65: 11/12.
    assert scores["auroc"] == pytest.approx(11 / 12)
    assert scores["accuracy"] == pytest.approx(0.75) and scores["out_of_scope_examples"] == 3


def test_without_out_of_scope_sentences_only_calibration_is_scored():
    scores = confidence_scores([0.9, 0.8], [True, False])
    assert scores["auroc"] is None and scores["out_of_scope_recall"] is None and scores["out_of_scope_examples"] == 0
    assert scores["ece"] == pytest.approx(0.5 * 0.1 + 0.5 * 0.8)


def test_out_of_scope_files_read_as_yaml_or_lines(tmp_path):
    text = tmp_path / "oos.txt"
    text.write_text("order a pizza\n\n  what is the capital of france \n", encoding="utf-8")
    assert read_out_of_scope(text) == ["order a pizza", "what is the capital of france"]
    yaml_file = tmp_path / "oos.yml"
    yaml_file.write_text('version: "3.1"\nnlu:\n- intent: out_of_scope\n  examples: |\n    - order a pizza\n    - asdkjh qwe\n')
    assert read_out_of_scope(yaml_file) == ["order a pizza", "asdkjh qwe"]
    with pytest.raises(DataError, match="does not exist"):
        read_out_of_scope(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataError, match="holds no sentences"):
        read_out_of_scope(tmp_path / "empty.txt")


def test_ece_agrees_with_sklearns_calibration_curve():
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.2, 1.0, 500)
    correct = rng.uniform(size=500) < confidence ** 2
    accuracy, mean_confidence = calibration_curve(correct.astype(int), confidence, n_bins=15)
    counts = np.histogram(confidence, bins=np.linspace(0, 1, 16))[0]
    expected = np.sum(counts[counts > 0] / 500 * np.abs(accuracy - mean_confidence))
    assert expected_calibration_error(confidence, correct, bins=15) == pytest.approx(expected)


def _cross_entropy(logits, targets, temperature):
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    return float(-(targets * (scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True)))).sum(axis=1).mean())


def test_a_fitted_temperature_recovers_a_teachers_and_lowers_nll():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(200, 5))
    teacher = np.exp(logits / 2.5) / np.exp(logits / 2.5).sum(axis=1, keepdims=True)
    assert fit_temperature(logits, teacher) == pytest.approx(2.5, abs=1e-3)  # a student sharper than its teacher
    # Gold labels drawn from softmax(logits / 0.5): the logits are underconfident, the NLL is lower at the fit.
    gold = np.array([rng.choice(5, p=np.exp(row / 0.5) / np.exp(row / 0.5).sum()) for row in logits])
    one_hot = np.eye(5)[gold]
    fitted = fit_temperature(logits, one_hot)
    assert 0.3 < fitted < 0.8
    assert _cross_entropy(logits, one_hot, fitted) < _cross_entropy(logits, one_hot, 1.0) - 0.05
    with pytest.raises(ValueError, match="same \\[examples, labels\\] shape"):
        fit_temperature(logits, teacher[:10])
