"""Can a fallback trust the confidence? Calibration on in-scope messages and separation of
out-of-scope ones, with the top intent's confidence as the score (what Rasa's FallbackClassifier reads).

- expected calibration error (ECE): over equal-width confidence bins, the gap between the share of
  correct answers and the mean confidence, weighted by the bin's share of messages; and the ECE a perfectly
  calibrated model would show on as many messages (the floor sampling noise puts under it);
- AUROC of the top confidence, in-scope (positive) against out-of-scope messages (scikit-learn);
- the threshold that keeps ``keep`` (95%) of in-scope answers, the share of out-of-scope messages
  it catches, and the in-scope accuracy left when answers below it fall back;
- the temperature that makes one model's softmax match another's (a student's its teacher's) or gold labels.
"""
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from rasa_kd.errors import DataError

KEEP = 0.95  # share of in-scope answers a fallback threshold must keep
BINS = 15


def _bin_ids(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bins over [0, 1], as sklearn.calibration.calibration_curve(strategy="uniform") cuts them."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.searchsorted(edges[1:-1], confidence, side="right")


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], bins: int = BINS) -> float:
    """Sum over bins of (messages in the bin / all) x |accuracy in the bin - mean confidence in the bin|."""
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    if confidence.shape != correct.shape:
        raise ValueError(f"{confidence.size} confidences but {correct.size} correctness flags")
    if confidence.size == 0:
        return 0.0
    ids = _bin_ids(confidence, bins)
    counts = np.bincount(ids, minlength=bins)
    gaps = np.abs(np.bincount(ids, weights=correct, minlength=bins) - np.bincount(ids, weights=confidence, minlength=bins))
    return float(gaps.sum() / confidence.size) if counts.any() else 0.0


def ece_if_calibrated(confidence: Sequence[float], bins: int = BINS, draws: int = 200, seed: int = 0) -> Dict[str, float]:
    """The ECE a perfectly calibrated model with these confidences would show on this many messages (each answer
    right with probability its confidence), over ``draws`` simulated test sets: its mean and 95th percentile.

    ECE is biased upwards on small test sets (a bin of 10 messages is rarely exactly at its mean confidence):
    a measured ECE below the 95th percentile cannot be told apart from a calibrated model's."""
    confidence = np.asarray(confidence, dtype=np.float64)
    if confidence.size == 0:
        return {"mean": 0.0, "p95": 0.0}
    rng = np.random.default_rng(seed)
    values = [expected_calibration_error(confidence, rng.random(confidence.size) < confidence, bins) for _ in range(draws)]
    return {"mean": float(np.mean(values)), "p95": float(np.percentile(values, 95))}


def fit_temperature(logits: np.ndarray, targets: np.ndarray, bounds: tuple = (0.05, 20.0)) -> float:
    """The T in ``bounds`` that minimises the mean cross-entropy of softmax(logits / T) against ``targets``
    (rows of probabilities: a teacher's softmax, or one-hot gold labels, when it is the NLL)."""
    from scipy.optimize import minimize_scalar

    logits, targets = np.asarray(logits, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    if logits.shape != targets.shape or logits.ndim != 2 or not len(logits):
        raise ValueError(f"logits {logits.shape} and targets {targets.shape} must be the same [examples, labels] shape")

    def cross_entropy(temperature: float) -> float:
        scaled = logits / temperature
        scaled -= scaled.max(axis=1, keepdims=True)
        log_probabilities = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        return float(-(targets * log_probabilities).sum(axis=1).mean())

    return float(minimize_scalar(cross_entropy, bounds=bounds, method="bounded", options={"xatol": 1e-4}).x)


def threshold_keeping(in_scope_confidence: Sequence[float], keep: float = KEEP) -> float:
    """The highest threshold t such that at least ``keep`` of the in-scope confidences are >= t."""
    values = np.sort(np.asarray(in_scope_confidence, dtype=np.float64))
    if values.size == 0:
        raise ValueError("no in-scope confidences to pick a threshold from")
    # Keeping ceil(keep * n) answers means dropping at most n - ceil(keep * n): the threshold is the
    # smallest confidence that must stay.
    dropped = values.size - int(np.ceil(keep * values.size - 1e-9))
    return float(values[dropped])


def confidence_scores(in_scope_confidence: Sequence[float], in_scope_correct: Sequence[bool],
                      out_of_scope_confidence: Optional[Sequence[float]] = None, keep: float = KEEP,
                      bins: int = BINS) -> Dict[str, Optional[float]]:
    """ECE on in-scope messages; with out-of-scope ones, AUROC and what the ``keep`` threshold does."""
    from sklearn.metrics import roc_auc_score

    conf = np.asarray(in_scope_confidence, dtype=np.float64)
    correct = np.asarray(in_scope_correct, dtype=bool)
    threshold = threshold_keeping(conf, keep)
    kept = conf >= threshold
    scores: Dict[str, Optional[float]] = {
        "in_scope_examples": int(conf.size),
        "ece": expected_calibration_error(conf, correct, bins),
        "ece_if_calibrated": ece_if_calibrated(conf, bins),
        "mean_confidence": float(conf.mean()),
        "accuracy": float(correct.mean()),
        "keep": keep,
        "threshold": threshold,
        "in_scope_kept": float(kept.mean()),
        # An answer below the threshold falls back: it counts as wrong.
        "in_scope_accuracy_at_threshold": float((correct & kept).mean()),
        "out_of_scope_examples": 0, "auroc": None, "out_of_scope_recall": None, "out_of_scope_mean_confidence": None,
    }
    if out_of_scope_confidence is not None and len(out_of_scope_confidence):
        out = np.asarray(out_of_scope_confidence, dtype=np.float64)
        labels = np.concatenate([np.ones(conf.size), np.zeros(out.size)])
        scores.update({
            "out_of_scope_examples": int(out.size),
            "auroc": float(roc_auc_score(labels, np.concatenate([conf, out]))),
            "out_of_scope_recall": float((out < threshold).mean()),
            "out_of_scope_mean_confidence": float(out.mean()),
        })
    return scores


def held_out_threshold(confidence: Sequence[float], split: str, keep: float = KEEP) -> Dict[str, object]:
    """The fallback threshold picked on held-out messages ``split``: it keeps ``keep`` of their answers."""
    return {"threshold": threshold_keeping(confidence, keep), "keep": keep, "split": split, "messages": len(confidence)}


def at_threshold(threshold: float, in_scope_confidence: Sequence[float], in_scope_correct: Sequence[bool],
                 out_of_scope_confidence: Optional[Sequence[float]] = None) -> Dict[str, Optional[float]]:
    """What a threshold picked elsewhere does here: in-scope answers kept, accuracy with the rest falling back
    (counted wrong), and out-of-scope messages caught."""
    conf = np.asarray(in_scope_confidence, dtype=np.float64)
    kept = conf >= threshold
    caught = None
    if out_of_scope_confidence is not None and len(out_of_scope_confidence):
        caught = float((np.asarray(out_of_scope_confidence, dtype=np.float64) < threshold).mean())
    return {"in_scope_kept": float(kept.mean()),
            "in_scope_accuracy_at_threshold": float((np.asarray(in_scope_correct, dtype=bool) & kept).mean()),
            "out_of_scope_recall": caught}


def top_intents(model, texts: Sequence[str]):
    """Each text's top intent and its softmax confidence, from a teacher or student (``logits``, ``labels``)."""
    from rasa_kd.models.predictions import softmax

    probabilities = softmax(model.logits(list(texts)))
    return [model.labels[i] for i in probabilities.argmax(axis=1)], probabilities.max(axis=1)


def read_out_of_scope(path: Path, setting: str = "data.out_of_scope") -> List[str]:
    """Out-of-scope sentences: a Rasa YAML NLU file (every example, whatever its intent) or a text file of
    one sentence a line. ``setting`` names where the path came from, for the errors."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"out-of-scope file {path} does not exist ('{setting}')")
    if path.suffix in (".yml", ".yaml"):
        from rasa_kd.data.nlu_yaml import load_intent_examples

        texts = [text for text, _ in load_intent_examples(path)]
    else:
        try:
            texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError as error:
            raise DataError(f"out-of-scope file {path} is not UTF-8 text: {error}") from None
    if not texts:
        raise DataError(f"out-of-scope file {path} holds no sentences")
    return texts


def plot_reliability(curves: Dict[str, tuple], path: Path, bins: int = BINS) -> None:
    """Reliability diagram: accuracy against mean confidence per bin, one line per model."""
    from sklearn.calibration import calibration_curve

    from rasa_kd.distill.evaluate import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="calibrated")
    for name, (confidence, correct) in curves.items():
        accuracy, mean_confidence = calibration_curve(np.asarray(correct, dtype=int), np.asarray(confidence), n_bins=bins)
        ax.plot(mean_confidence, accuracy, "o-", label=name)
    ax.set_xlabel("top confidence (bin mean)")
    ax.set_ylabel("accuracy in the bin")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("reliability on in-scope messages")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confidence_histograms(models: Dict[str, tuple], thresholds: Dict[str, float], path: Path) -> None:
    """Top confidences, in-scope against out-of-scope, one panel per model, with the 95%-keep threshold."""
    from rasa_kd.distill.evaluate import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 3.6), squeeze=False)
    edges = np.linspace(0, 1, 21)
    for ax, (name, (in_scope, out_of_scope)) in zip(axes[0], models.items()):
        ax.hist(in_scope, bins=edges, alpha=0.6, density=True, label=f"in scope ({len(in_scope)})")
        if out_of_scope is not None and len(out_of_scope):
            ax.hist(out_of_scope, bins=edges, alpha=0.6, density=True, label=f"out of scope ({len(out_of_scope)})")
        ax.axvline(thresholds[name], color="black", linestyle="--", label=f"keeps 95%: {thresholds[name]:.2f}")
        ax.set_title(name)
        ax.set_xlabel("top confidence")
        ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel("density")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
