"""Rasa 3 YAML NLU files: writing intent examples, and reading them back through Rasa's own loader."""
import os
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import yaml

from rasa_kd.errors import DataError

RASA_YAML_VERSION = "3.1"


class _LiteralBlock(str):
    """A string that YAML writes as a literal block (``|``), the way Rasa's own files look."""


def _represent_literal(dumper: yaml.SafeDumper, value: _LiteralBlock) -> yaml.Node:
    # PyYAML falls back to a quoted scalar by itself when the text cannot be a literal block
    # (e.g. it holds control characters); Rasa reads either.
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style="|")


class _NLUDumper(yaml.SafeDumper):
    pass


_NLUDumper.add_representer(_LiteralBlock, _represent_literal)


def dump_nlu_yaml(path: Path, examples_by_intent: Dict[str, Sequence[str]]) -> None:
    """Write intents with their example texts as a Rasa NLU file, atomically.

    Texts must be single-line, stripped and free of entity markup (``rasa_kd.data.convert`` makes
    them so); intents are written in the order given.
    """
    document = {
        "version": RASA_YAML_VERSION,
        "nlu": [
            # Rasa's block format is one "- text" line per example; each line is a list item of it.
            {"intent": intent, "examples": _LiteralBlock("".join(f"- {text}\n" for text in texts))}
            for intent, texts in examples_by_intent.items()
        ],
    }
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yaml.dump(document, handle, Dumper=_NLUDumper, allow_unicode=True, sort_keys=False, width=1 << 30)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_intent_examples(path: Path, retrieval_intents: str = "full") -> List[Tuple[str, str]]:
    """Return ``(text, intent)`` pairs of a Rasa NLU file or folder, read by Rasa's loader.

    ``retrieval_intents="full"`` labels an example of ``faq/ask_price`` as ``faq/ask_price``;
    ``"base"`` labels it ``faq``, as Rasa's intent classifiers see it.
    """
    from rasa.shared.exceptions import RasaException
    from rasa.shared.nlu.constants import INTENT, INTENT_RESPONSE_KEY, TEXT
    from rasa.shared.nlu.training_data.loading import load_data

    if retrieval_intents not in ("full", "base"):
        raise ValueError(f"retrieval_intents must be 'full' or 'base', got {retrieval_intents!r}")
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    try:
        training_data = load_data(str(path))
    except RasaException as error:
        raise DataError(f"{path}: Rasa cannot read it: {error}") from error
    pairs = []
    for message in training_data.intent_examples:
        intent = message.get(INTENT)
        if retrieval_intents == "full" and message.get(INTENT_RESPONSE_KEY):
            intent = message.get(INTENT_RESPONSE_KEY)
        pairs.append((message.get(TEXT), intent))
    if not pairs:
        raise DataError(f"{path}: no intent examples found (is it a Rasa NLU YAML file?)")
    return pairs
