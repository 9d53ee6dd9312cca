"""The prediction contract of every rasa-kd model: logits -> softmax -> Rasa's ``{"name", "confidence"}``
with plain Python floats, ranked by confidence."""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

Prediction = Dict[str, Any]
NO_INTENT: Prediction = {"name": None, "confidence": 0.0}


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``."""
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


def rank_intents(
    probabilities: Optional[np.ndarray], labels: Sequence[str], ranking_length: int
) -> Tuple[Prediction, List[Prediction]]:
    """The top intent and the ranking sorted by confidence, cut to ``ranking_length`` (0 = all).

    ``None`` (a text with nothing to classify) gives DIET's answer for an empty message:
    ``{"name": None, "confidence": 0.0}`` and an empty ranking.
    """
    if probabilities is None:
        return dict(NO_INTENT), []
    # Stable sort on -p: ties keep label order, so the answer does not depend on float noise order.
    order = np.argsort(-probabilities, kind="stable")
    if ranking_length > 0:
        order = order[:ranking_length]
    ranking = [{"name": labels[i], "confidence": float(probabilities[i])} for i in order]
    return dict(ranking[0]), ranking
