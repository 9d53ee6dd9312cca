"""The transfer set: the training sentences plus new, unlabelled ones for the teacher to label (among them
synthetic out-of-scope sentences, :mod:`rasa_kd.distill.outliers`).

Sentences are deduplicated (case- and whitespace-insensitively) and no sentence of dev or test ever
enters, by default not even a training sentence that also occurs in dev or test; every drop is counted.
"""
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from rasa_kd.errors import DataError

logger = logging.getLogger(__name__)

SOURCES = ("train", "unlabelled", "lm", "outliers", "rules", "gpt2")


def sentence_key(text: str) -> str:
    """What makes two sentences the same: case and whitespace do not count."""
    return " ".join(text.lower().split())


@dataclass
class TransferSet:
    texts: List[str] = field(default_factory=list)
    sources: List[str] = field(default_factory=list)
    intents: List[Optional[str]] = field(default_factory=list)  # gold intent of training sentences
    stats: Dict = field(default_factory=dict)
    # What the teacher reads to label a sentence, where that is not the sentence (``transfer_set.rules.label_unmasked``).
    teacher_texts: List[Optional[str]] = field(default_factory=list)

    def __post_init__(self):
        if not self.teacher_texts:
            self.teacher_texts = [None] * len(self.texts)

    def __len__(self) -> int:
        return len(self.texts)

    def labelled_texts(self) -> List[str]:
        """The sentences the teacher labels, one per transfer sentence."""
        return [t if shown is None else shown for t, shown in zip(self.texts, self.teacher_texts)]

    def reordered(self, order: Sequence[int]) -> "TransferSet":
        """The same rows in ``order``."""
        return TransferSet([self.texts[i] for i in order], [self.sources[i] for i in order],
                           [self.intents[i] for i in order], dict(self.stats), [self.teacher_texts[i] for i in order])

    def save(self, path: Path) -> None:
        """One JSON object per line (text, source, intent, and teacher_text where set), written atomically."""
        from rasa_kd.io_utils import write_text

        lines = (
            json.dumps({"text": t, "source": s, "intent": i, **({} if shown is None else {"teacher_text": shown})},
                       ensure_ascii=False)
            for t, s, i, shown in zip(self.texts, self.sources, self.intents, self.teacher_texts)
        )
        write_text(path, "".join(line + "\n" for line in lines))

    @classmethod
    def load(cls, path: Path) -> "TransferSet":
        path = Path(path)
        if not path.is_file():
            raise DataError(f"transfer set {path} does not exist; run `rasa-kd augment` first")
        result = cls()
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    row = json.loads(line)
                    text, source, intent = row["text"], row["source"], row.get("intent")
                except (ValueError, KeyError, TypeError) as error:
                    raise DataError(f"{path}, line {number}: not a transfer-set row ({error})") from None
                result.texts.append(text)
                result.sources.append(source)
                result.intents.append(intent)
                result.teacher_texts.append(row.get("teacher_text"))
        return result


class _Builder:
    def __init__(self, target: int, held_out: Sequence[str]):
        self.target = target
        self.held_out = {sentence_key(t) for t in held_out}
        self.seen: set = set()
        self.result = TransferSet()
        self.dropped_held_out: Counter = Counter()
        self.dropped_duplicates: Counter = Counter()
        self.dropped_empty: Counter = Counter()

    @property
    def full(self) -> bool:
        return len(self.result) >= self.target

    def add(self, text: str, source: str, intent: Optional[str] = None, check_held_out: bool = True,
            teacher_text: Optional[str] = None) -> bool:
        text = " ".join(text.split())
        key = sentence_key(text)
        if not key:
            self.dropped_empty[source] += 1
            return False
        if check_held_out and key in self.held_out:
            self.dropped_held_out[source] += 1
            return False
        if key in self.seen:
            self.dropped_duplicates[source] += 1
            return False
        self.seen.add(key)
        self.result.texts.append(text)
        self.result.sources.append(source)
        self.result.intents.append(intent)
        shown = None if teacher_text is None else " ".join(teacher_text.split())
        self.result.teacher_texts.append(None if shown == text else shown)
        return True

    def fill(self, source: str, generate: Callable[[int], List], quota: int, patience: int = 20) -> int:
        """Add generated sentences until ``quota`` were added or generation stops finding new ones. A generator
        returns sentences, or ``(sentence, what the teacher reads)`` pairs."""
        added, fruitless = 0, 0
        while added < quota and not self.full and fruitless < patience:
            wanted = min(quota - added, self.target - len(self.result))
            batch = generate(max(wanted, 16))
            new = 0
            for item in batch:
                if added >= quota or self.full:
                    break
                text, shown = (item, None) if isinstance(item, str) else item
                if self.add(text, source, teacher_text=shown):
                    added += 1
                    new += 1
            fruitless = 0 if new else fruitless + 1
        return added


def threshold_holdout(texts: Sequence[str], intents: Sequence[str], share: float, seed: int) -> List[int]:
    """Indices of the training sentences kept out of the transfer set to pick the student's fallback threshold on:
    ``round(share * n)`` of each intent with 5 or more examples (at least one), drawn with ``seed``."""
    if not share:
        return []
    by_intent: Dict[str, List[int]] = {}
    for index, intent in enumerate(intents):
        by_intent.setdefault(intent, []).append(index)
    rng = np.random.default_rng(seed)
    chosen: List[int] = []
    for intent in sorted(by_intent):
        indices = by_intent[intent]
        if len(indices) >= 5:
            count = max(1, int(round(share * len(indices))))
            chosen.extend(int(i) for i in rng.choice(indices, size=count, replace=False))
    return sorted(chosen)


def transfer_set_target(settings, training_sentences: int) -> int:
    """Sentences asked for: ``size`` if set, else the multiple of the training set, at least ``min_size``."""
    if settings.size is not None:
        return settings.size
    return max(int(round(settings.size_multiplier * training_sentences)), settings.min_size)


def build_transfer_set(
    train_texts: Sequence[str],
    train_intents: Sequence[str],
    held_out_texts: Sequence[str],
    settings,
    rule_augmenter=None,
    gpt2_generator: Optional[Callable[[int], List[str]]] = None,
    outlier_maker: Optional[Callable[[int], List[str]]] = None,
    out_of_scope: Sequence[str] = (),
    lm_sentences: Sequence[str] = (),
) -> TransferSet:
    """Training sentences first, then unlabelled-file sentences, the LM's ``lm_sentences``, the given
    ``out_of_scope`` ones, synthetic out-of-scope ones (their share of the size), then augmented ones up to the size."""
    target = transfer_set_target(settings, len(train_texts))
    builder = _Builder(target, held_out_texts)
    for text, intent in zip(train_texts, train_intents):
        builder.add(text, "train", intent, check_held_out=settings.drop_training_sentences_in_dev_test)
    train_kept = len(builder.result)
    if settings.unlabelled_file:
        for line in _read_unlabelled(Path(settings.unlabelled_file)):
            if builder.full:
                break
            builder.add(line, "unlabelled")
    for text in lm_sentences:
        if builder.full:
            break
        builder.add(text, "lm")
    for text in out_of_scope:
        if builder.full:
            break
        builder.add(text, "outliers")
    if outlier_maker is not None and settings.outliers:
        builder.fill("outliers", outlier_maker, int(round(settings.outliers * target)))
    rng = np.random.default_rng(settings.random_seed)
    kept = [(t, i) for t, s, i in zip(builder.result.texts, builder.result.sources, builder.result.intents) if s == "train"]
    kept = kept or list(zip(train_texts, train_intents))
    kept_train = [t for t, _ in kept]
    by_intent: Dict[str, List[str]] = {}
    for text, intent in kept:
        by_intent.setdefault(intent, []).append(text)
    same_intent = [by_intent[intent] for _, intent in kept]
    generators = []
    if "rules" in settings.augmentation and rule_augmenter is not None:
        generators.append(("rules", lambda n: [rule_augmenter.for_teacher(kept_train[i], same_intent[i])
                                               for i in rng.integers(0, len(kept_train), n)]))
    if "gpt2" in settings.augmentation and gpt2_generator is not None:
        generators.append(("gpt2", gpt2_generator))
    for position, (source, generate) in enumerate(generators):
        remaining = target - len(builder.result)
        # With two generators each makes its share; the last one fills what is left.
        quota = remaining if position == len(generators) - 1 else remaining // (len(generators) - position)
        builder.fill(source, generate, quota)
    result = builder.result
    counts = Counter(result.sources)
    if len(result) < target:
        logger.warning("transfer set has %d sentences, fewer than the %d asked for: the generators stopped finding new sentences", len(result), target)
    result.stats = {
        "size": len(result),
        "target_size": target,
        "by_source": {source: counts.get(source, 0) for source in SOURCES},
        "labelled_unmasked": sum(shown is not None for shown in result.teacher_texts),
        "training_sentences": len(train_texts),
        "training_sentences_kept": train_kept,
        "dropped_dev_test": dict(builder.dropped_held_out),
        "dropped_duplicates": dict(builder.dropped_duplicates),
        "dropped_empty": dict(builder.dropped_empty),
    }
    return result


def _read_unlabelled(path: Path) -> List[str]:
    if not path.is_file():
        raise DataError(f"unlabelled sentences file {path} does not exist ('transfer_set.unlabelled_file')")
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 ({error})") from None
