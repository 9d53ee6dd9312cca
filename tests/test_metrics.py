"""Classification scores (scikit-learn underneath), checked by hand and against the former hand-written ones."""
import numpy as np
import pytest

from rasa_kd.distill.evaluate import classification_scores

GOLD = ["a", "a", "b", "b", "c", "c", "c", "a"]
PRED = ["a", "b", "b", "b", "c", "a", "c", "a"]


def test_scores_by_hand():
    scores = classification_scores(GOLD, PRED)
    assert scores["examples"] == 8 and scores["accuracy"] == pytest.approx(6 / 8)
    # Every example has an intent, so micro-F1 is accuracy.
    assert scores["micro_f1"] == pytest.approx(6 / 8)
    # Per label F1 = 2tp / (2tp + fp + fn): a 4/6, b 4/5, c 4/5.
    assert scores["macro_f1"] == pytest.approx((4 / 6 + 4 / 5 + 4 / 5) / 3)


def test_binary_mcc_is_the_cola_metric():
    gold = ["acceptable"] * 6 + ["unacceptable"] * 4
    pred = ["acceptable"] * 5 + ["unacceptable"] * 3 + ["acceptable"] * 2
    # tp 5, fn 1, fp 2, tn 2 (acceptable as positive): (5*2 - 2*1) / sqrt(7 * 6 * 4 * 3)
    assert classification_scores(gold, pred)["mcc"] == pytest.approx(8 / np.sqrt(7 * 6 * 4 * 3))


def test_no_intent_is_a_miss_without_a_false_positive():
    scores = classification_scores(["a", "b", "a", "b"], ["a", None, "a", "a"])
    assert scores["accuracy"] == 0.5
    # tp=2, fp=1 (the "a" for a "b"), fn=2: precision 2/3, recall 1/2
    assert scores["micro_f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))


def test_a_constant_answer_has_zero_mcc():
    assert classification_scores(["a", "b", "a"], ["a", "a", "a"])["mcc"] == 0.0


def test_lengths_must_agree():
    with pytest.raises(ValueError, match="2 gold labels but 1 predictions"):
        classification_scores(["a", "b"], ["a"])


def former_scores(gold, predicted):
    """The scores as rasa-kd computed them by hand before it used scikit-learn (kept as the reference)."""
    gold_arr = np.array(gold, dtype=object)
    pred_arr = np.array([p if p is not None else "\0none" for p in predicted], dtype=object)
    correct = gold_arr == pred_arr
    answered = pred_arr != "\0none"
    tp, fp, fn = int(correct.sum()), int((answered & ~correct).sum()), int((~correct).sum())
    precision, recall = (tp / (tp + fp) if tp + fp else 0.0), (tp / (tp + fn) if tp + fn else 0.0)
    labels = sorted(set(gold) | {p for p in predicted if p is not None})
    f1s = []
    for label in labels:
        tp_l = int(((gold_arr == label) & (pred_arr == label)).sum())
        fp_l = int(((gold_arr != label) & (pred_arr == label)).sum())
        fn_l = int(((gold_arr == label) & (pred_arr != label)).sum())
        f1s.append(2 * tp_l / (2 * tp_l + fp_l + fn_l) if tp_l + fp_l + fn_l else 0.0)
    classes = labels + (["\0none"] if None in predicted else [])
    index = {label: i for i, label in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)))
    for g, p in zip(gold_arr, pred_arr):
        confusion[index[g], index[p]] += 1
    t, p, c, s = confusion.sum(axis=1), confusion.sum(axis=0), np.trace(confusion), confusion.sum()
    denominator = np.sqrt((s * s - p @ p) * (s * s - t @ t))
    return {"examples": len(gold), "accuracy": float(correct.mean()),
            "micro_f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "macro_f1": float(np.mean(f1s)), "mcc": float((c * s - t @ p) / denominator) if denominator else 0.0}


@pytest.mark.parametrize("seed", range(20))
def test_same_figures_as_the_former_hand_written_scores(seed):
    rng = np.random.default_rng(seed)
    labels = [f"intent_{i}" for i in range(int(rng.integers(2, 8)))]
    n = int(rng.integers(5, 60))
    gold = list(rng.choice(labels, n))
    # Mostly right, some wrong, some with no intent at all (None), as a model's answers are.
    predicted = [g if rng.random() < 0.6 else (None if rng.random() < 0.2 else str(rng.choice(labels))) for g in gold]
    got, want = classification_scores(gold, predicted), former_scores(gold, predicted)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
