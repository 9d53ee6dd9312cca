"""What the rasa-kd classifiers share: the output contract, config checks, error wrapping."""
from typing import Any, Callable, List, Optional, Sequence, Text

import numpy as np
from rasa.shared.exceptions import RasaException
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message

from rasa_kd.errors import ConfigError
from rasa_kd.predictions import NO_INTENT, rank_intents
from rasa_kd.settings import integer, optional_integer

RANKING_LENGTH = "ranking_length"
BLAS_THREADS = "blas_threads"
# Rasa adds this key itself for `rasa train --finetune`.
RASA_ADDED_KEYS = ("finetuning_epoch_fraction",)


class RasaKDComponentError(RasaException):
    """A rasa-kd error surfaced through Rasa, which prints it without a traceback."""


def check_ranking_length(value: Any, owner: Text) -> int:
    try:
        return integer(0)(RANKING_LENGTH, value)
    except ConfigError as error:
        raise ConfigError(f"{owner}: {error}") from None


def check_blas_threads(value: Any, owner: Text) -> Optional[int]:
    try:
        return optional_integer(1, 256)(BLAS_THREADS, value)
    except ConfigError as error:
        raise ConfigError(f"{owner}: {error}") from None


def set_intents(
    messages: List[Message],
    encode: Callable[[Sequence[str]], List[Sequence[int]]],
    logits_of_ids: Callable[[List[Sequence[int]]], np.ndarray],
    labels: Sequence[str],
    ranking_length: int,
    special_tokens: int = 2,
) -> List[Message]:
    """Classify ``messages`` in one batch and set ``intent`` and ``intent_ranking`` on each.

    Text with no tokens beyond the ``special_tokens`` ([CLS] [SEP]) (empty, blank, only control
    characters) gets no intent, as DIET answers an empty message.
    """
    texts = [message.get(TEXT) or "" for message in messages]
    ids = encode(texts)
    has_content = [bool(text.strip()) and len(tokens) > special_tokens for text, tokens in zip(texts, ids)]
    probabilities = iter(())
    if any(has_content):
        from rasa_kd.teacher import softmax

        probabilities = iter(softmax(logits_of_ids([tokens for tokens, keep in zip(ids, has_content) if keep])))
    for message, keep in zip(messages, has_content):
        intent, ranking = rank_intents(next(probabilities) if keep else None, labels, ranking_length)
        message.set(INTENT, intent, add_to_output=True)
        message.set(INTENT_RANKING_KEY, ranking, add_to_output=True)
    return messages


def set_no_intents(messages: List[Message]) -> List[Message]:
    for message in messages:
        message.set(INTENT, dict(NO_INTENT), add_to_output=True)
        message.set(INTENT_RANKING_KEY, [], add_to_output=True)
    return messages
