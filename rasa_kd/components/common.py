"""What the rasa-kd classifiers share: the serving settings, the output contract, error wrapping."""
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Text, Type, TypeVar

import numpy as np
from rasa.shared.exceptions import InvalidConfigException, RasaException
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message

from rasa_kd.errors import ConfigError
from rasa_kd.models.predictions import NO_INTENT, rank_intents, softmax
from rasa_kd.settings import from_mapping, integer, optional_integer, setting

# Rasa adds this key itself for `rasa train --finetune`.
RASA_ADDED_KEYS = ("finetuning_epoch_fraction",)
T = TypeVar("T")


@dataclass
class ServingSettings:
    """How every rasa-kd classifier answers."""

    ranking_length: int = setting(10, "intents listed in `intent_ranking`; 0 lists all", integer(0))


@dataclass
class StudentServingSettings(ServingSettings):
    """How a student answers."""

    blas_threads: Optional[int] = setting(
        None, "at most this many NumPy BLAS threads per message; null: the process's setting (all cores, or "
        "OPENBLAS_NUM_THREADS); 1 suits a server whose cores are busy with other processes", optional_integer(1, 256))


class RasaKDComponentError(RasaException):
    """A rasa-kd error surfaced through Rasa, which prints it without a traceback."""


def check_component_config(cls: Type[T], config: Dict[Text, Any], owner: Text) -> T:
    """The component's settings ``cls`` from its config; a bad key or value fails as Rasa expects, naming it."""
    try:
        return from_mapping(cls, config, owner, ignore=RASA_ADDED_KEYS)
    except ConfigError as error:
        raise InvalidConfigException(str(error)) from None


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
