"""Classification scores used in reports: accuracy, macro- and micro-F1, Matthews correlation."""
from typing import Dict, Optional, Sequence

import numpy as np


def classification_scores(gold: Sequence[str], predicted: Sequence[Optional[str]]) -> Dict[str, float]:
    """Scores of ``predicted`` against ``gold`` labels.

    Micro-F1 counts a prediction of no intent (None) as a miss that adds no false positive, so it
    equals accuracy only when every example gets an intent. Macro-F1 averages over the gold labels
    and the predicted ones. MCC is the multi-class generalisation (Gorodkin 2004); for two labels it
    is the usual Matthews correlation, the CoLA metric.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    if not gold:
        raise ValueError("no examples to score")
    gold_arr = np.array(gold, dtype=object)
    pred_arr = np.array([p if p is not None else "\0none" for p in predicted], dtype=object)
    correct = gold_arr == pred_arr
    answered = pred_arr != "\0none"
    tp = int(correct.sum())
    fp = int((answered & ~correct).sum())
    fn = int((~correct).sum())
    micro_p = tp / (tp + fp) if tp + fp else 0.0
    micro_r = tp / (tp + fn) if tp + fn else 0.0
    micro_f1 = 2 * micro_p * micro_r / (micro_p + micro_r) if micro_p + micro_r else 0.0

    labels = sorted(set(gold) | {p for p in predicted if p is not None})
    f1s = []
    for label in labels:
        tp_l = int(((gold_arr == label) & (pred_arr == label)).sum())
        fp_l = int(((gold_arr != label) & (pred_arr == label)).sum())
        fn_l = int(((gold_arr == label) & (pred_arr != label)).sum())
        f1s.append(2 * tp_l / (2 * tp_l + fp_l + fn_l) if tp_l + fp_l + fn_l else 0.0)
    return {
        "examples": len(gold),
        "accuracy": float(correct.mean()),
        "micro_f1": float(micro_f1),
        "macro_f1": float(np.mean(f1s)),
        "mcc": matthews_corrcoef(gold, predicted),
    }


def matthews_corrcoef(gold: Sequence[str], predicted: Sequence[Optional[str]]) -> float:
    """Multi-class Matthews correlation coefficient (0.0 when undefined)."""
    labels = sorted(set(gold) | {p for p in predicted if p is not None} | ({"\0none"} if None in predicted else set()))
    index = {label: i for i, label in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)), dtype=np.float64)
    for g, p in zip(gold, predicted):
        confusion[index[g], index[p if p is not None else "\0none"]] += 1
    t = confusion.sum(axis=1)  # times each label truly occurred
    p = confusion.sum(axis=0)  # times each label was predicted
    c, s = np.trace(confusion), confusion.sum()
    denominator = np.sqrt((s * s - p @ p) * (s * s - t @ t))
    return float((c * s - t @ p) / denominator) if denominator else 0.0
