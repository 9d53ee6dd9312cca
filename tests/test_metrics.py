import pytest
from sklearn.metrics import f1_score, matthews_corrcoef

from rasa_kd.metrics import classification_scores

GOLD = ["a", "a", "b", "b", "c", "c", "c", "a"]
PRED = ["a", "b", "b", "b", "c", "a", "c", "a"]


def test_scores_agree_with_scikit_learn():
    scores = classification_scores(GOLD, PRED)
    assert scores["accuracy"] == pytest.approx(6 / 8)
    assert scores["micro_f1"] == pytest.approx(f1_score(GOLD, PRED, average="micro"))
    assert scores["macro_f1"] == pytest.approx(f1_score(GOLD, PRED, average="macro"))
    assert scores["mcc"] == pytest.approx(matthews_corrcoef(GOLD, PRED))


def test_binary_mcc_is_the_cola_metric():
    gold = ["acceptable"] * 6 + ["unacceptable"] * 4
    pred = ["acceptable"] * 5 + ["unacceptable"] * 3 + ["acceptable"] * 2
    assert classification_scores(gold, pred)["mcc"] == pytest.approx(matthews_corrcoef(gold, pred))


def test_no_intent_is_a_miss_without_a_false_positive():
    scores = classification_scores(["a", "b", "a", "b"], ["a", None, "a", "a"])
    assert scores["accuracy"] == 0.5
    # tp=2, fp=1 (the "a" for a "b"), fn=2: precision 2/3, recall 1/2
    assert scores["micro_f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))


def test_lengths_must_agree():
    with pytest.raises(ValueError, match="2 gold labels but 1 predictions"):
        classification_scores(["a", "b"], ["a"])
