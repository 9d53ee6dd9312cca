"""Out-of-scope sentences made from the training data alone, for outlier exposure (Hendrycks et al. 2019).

A bot's out-of-scope messages are mostly fluent sentences about something else ("what is the capital
of france"), plus gibberish and other languages. Without outside data the closest stand-ins are:

- ``frame``: a training sentence whose content words are swapped for common words of the teacher's
  vocabulary that the training data never uses. The frame ("can you ... my ...") stays, the topic goes.
  The frame is the very common words that many intents share (``frame_words``); every other word goes.
- ``words``: 2 to 10 such common words in a row.
- ``gibberish``: keyboard mash, 1 to 4 "words" of 2 to 8 random letters.
- ``script``: 1 to 5 words in another script (Cyrillic, Greek, Arabic, Devanagari, CJK).

The teacher is trained towards equal confidence in every intent on them, and the transfer set carries
them so that the student learns the teacher's flat logits there.

No frames are made when the frame words are most of a training sentence (``MAX_FRAME_SHARE``): then what is
left of a sentence still says which intent it is. TREC's six question types share most common words, so its
frames kept nearly all of a question ("How many <swapped> can be made from the four <swapped> ?"), and a
teacher trained towards equal confidence on them was unsure of half of its own transfer set, the rule-made
questions (mean top confidence 0.54; 0.80 without frames), and its BiLSTM lost 5 test points
(benchmarks/NOTES.md, "Full-size tasks with today's defaults").
"""
import logging
import math
import re
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import numpy as np

KINDS = (("frame", 0.6), ("words", 0.2), ("gibberish", 0.1), ("script", 0.1))
# BERT-family vocabularies list frequent words first: the first 1,000 whole words are function words and
# the commonest verbs and nouns; the teacher's replacements come from the first 10,000. The transfer set's
# come from the first 2,000: each word it shows becomes a trained, full-precision row of the student
# (1.5 KB at the default width), and 10,000 grew the student by 4-8 MB for no better separation
# (benchmarks/NOTES.md, "Outlier exposure").
FRAME_WORDS = 1_000
COMMON_WORDS = 10_000
STUDENT_WORDS = 2_000
# Share of a training sentence's words that are frame words, averaged over the sentences, above which no
# frames are made: 0.32-0.44 on every few-shot set and the example bot, 0.38 on Sara, 0.68 on TREC.
MAX_FRAME_SHARE = 0.5
_SCRIPTS = ((0x0430, 0x044F), (0x03B1, 0x03C9), (0x0627, 0x064A), (0x0905, 0x0939), (0x4E00, 0x9FA5))
_WORD = re.compile(r"[^\W\d_]+")
logger = logging.getLogger(__name__)


def _words(text: str) -> List[str]:
    return _WORD.findall(text.lower())


def frame_words(texts: Sequence[str], intents: Sequence[str], vocab: Dict[str, int]) -> set:
    """Very common English words (the vocabulary's first ``FRAME_WORDS``) that a third of the intents or more use.

    Both conditions: a one-domain bot uses its domain's words ("bike", "repair") in most intents, and
    those must be swapped out, not kept as frame.
    """
    used_by: Dict[str, set] = defaultdict(set)
    for text, intent in zip(texts, intents):
        for word in _words(text):
            used_by[word].add(intent)
    needed = max(2, math.ceil(len(set(intents)) / 3))
    common = set(_whole_words(vocab)[:FRAME_WORDS])
    return {word for word, owners in used_by.items() if len(owners) >= needed and word in common}


def frame_share(texts: Sequence[str], frame: set) -> float:
    """Mean share of a training sentence's words that are ``frame`` words (sentences without words left out)."""
    shares = [sum(w in frame for w in words) / len(words) for words in map(_words, texts) if words]
    return float(np.mean(shares)) if shares else 0.0


def _whole_words(vocab: Dict[str, int]) -> List[str]:
    """Whole ASCII alphabetic words of the vocabulary in id order (one letter words included)."""
    return [t for _, t in sorted((i, t) for t, i in vocab.items() if t.isalpha() and t.isascii())]


def replacement_words(vocab: Dict[str, int], training_texts: Sequence[str], count: Optional[int] = None) -> List[str]:
    """The first ``count`` (default ``COMMON_WORDS``) whole alphabetic words of the vocabulary (by id) that no
    training sentence uses."""
    used = {word for text in training_texts for word in _words(text)}
    return [t for t in _whole_words(vocab) if len(t) > 2 and t not in used][:count or COMMON_WORDS]


class OutlierMaker:
    """Makes synthetic out-of-scope sentences from training sentences and the teacher's vocabulary."""

    def __init__(self, texts: Sequence[str], intents: Sequence[str], vocab: Dict[str, int], rng: np.random.Generator,
                 words: Optional[int] = None):
        words = replacement_words(vocab, texts, words)
        if not words:
            raise ValueError("no replacement words: the vocabulary has no common words the training data does not use")
        self.texts = list(texts)
        self.frame = frame_words(texts, intents, vocab)
        self.frame_share = frame_share(texts, self.frame)
        self.make_frames = self.frame_share <= MAX_FRAME_SHARE
        if not self.make_frames:
            logger.info("outliers: no training-sentence frames (frame words are %.0f%% of a sentence's words, above %.0f%%: "
                        "what is left would still read as an intent); word strings instead", 100 * self.frame_share,
                        100 * MAX_FRAME_SHARE)
        self.words = list(words)
        self.rng = rng

    def __call__(self, count: int) -> List[str]:
        """``count`` sentences, the kinds drawn in the proportions of ``KINDS``."""
        kinds = self.rng.choice(len(KINDS), size=count, p=[p for _, p in KINDS])
        makers = (self._frame, self._word_string, self._gibberish, self._script)
        return [makers[k]() for k in kinds]

    def _frame(self) -> str:
        words = self.texts[int(self.rng.integers(len(self.texts)))].split()
        if not words or not self.make_frames:
            return self._word_string()
        content = [i for i, w in enumerate(words) if any(part not in self.frame for part in _words(w))]
        for i in content or [int(self.rng.integers(len(words)))]:
            words[i] = self._word()
        return " ".join(words)

    def _word(self) -> str:
        return self.words[int(self.rng.integers(len(self.words)))]

    def _word_string(self) -> str:
        return " ".join(self._word() for _ in range(int(self.rng.integers(2, 11))))

    def _gibberish(self) -> str:
        letters = "abcdefghijklmnopqrstuvwxyz"
        return " ".join("".join(letters[int(j)] for j in self.rng.integers(0, 26, int(self.rng.integers(2, 9))))
                        for _ in range(int(self.rng.integers(1, 5))))

    def _script(self) -> str:
        low, high = _SCRIPTS[int(self.rng.integers(len(_SCRIPTS)))]
        return " ".join("".join(chr(int(c)) for c in self.rng.integers(low, high + 1, int(self.rng.integers(2, 7))))
                        for _ in range(int(self.rng.integers(1, 6))))


def make_outliers(texts: Sequence[str], intents: Sequence[str], vocab: Dict[str, int], count: int, seed: int) -> List[str]:
    """``count`` synthetic out-of-scope sentences for a bot with these training examples (deterministic)."""
    if count <= 0:
        return []
    maker = OutlierMaker(texts, intents, vocab, np.random.default_rng(seed))
    return maker(count)
