"""Tang et al. (2019) augmentation rules: masking, word replacement and n-gram sampling.

The paper replaces a word with another of the same part of speech. No POS tagger ships with this
project's dependencies, so a word is replaced with one of its nearest neighbours (cosine) among the
teacher's whole-word WordPiece embeddings, which also tends to keep the part of speech and often the
sense. Only alphabetic words that are a single WordPiece are replaced; the rest are kept.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

MASK = "[MASK]"


class WordNeighbours:
    """Nearest whole-word WordPieces of a word, by cosine similarity of teacher input embeddings."""

    def __init__(self, vocab: Dict[str, int], embeddings: np.ndarray, k: int, lowercase: bool = True):
        self.k = k
        self.lowercase = lowercase
        self.vocab = vocab
        candidates = sorted(
            (i, token) for token, i in vocab.items() if token.isalpha() and not token.startswith("##") and i < len(embeddings)
        )
        self.candidate_ids = np.array([i for i, _ in candidates], dtype=np.int64)
        self.candidate_tokens = [token for _, token in candidates]
        matrix = embeddings[self.candidate_ids].astype(np.float32)
        self.matrix = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-8)
        self._cache: Dict[str, List[str]] = {}

    def __call__(self, word: str) -> List[str]:
        key = word.lower() if self.lowercase else word
        if key not in self._cache:
            self._cache[key] = self._lookup(key)
        return self._cache[key]

    def _lookup(self, word: str) -> List[str]:
        token_id = self.vocab.get(word)
        query = None if token_id is None else self._row(token_id)
        if query is None:  # not a single whole-word WordPiece: nothing to swap it for
            return []
        order = np.argsort(-(self.matrix @ query), kind="stable")
        neighbours = [self.candidate_tokens[i] for i in order[: self.k + 1] if self.candidate_tokens[i] != word]
        return neighbours[: self.k]

    def _row(self, token_id: int) -> Optional[np.ndarray]:
        position = np.searchsorted(self.candidate_ids, token_id)
        if position < len(self.candidate_ids) and self.candidate_ids[position] == token_id:
            return self.matrix[position]
        return None


class RuleAugmenter:
    """Makes a new sentence from a training sentence with Tang et al.'s three rules."""

    def __init__(self, settings, neighbours: Optional[WordNeighbours], rng: np.random.Generator):
        if settings.ngram_min > settings.ngram_max:
            from rasa_kd.errors import ConfigError

            raise ConfigError(
                f"'transfer_set.rules.ngram_min' ({settings.ngram_min}) must not exceed 'ngram_max' ({settings.ngram_max})"
            )
        self.settings = settings
        self.neighbours = neighbours
        self.rng = rng

    def __call__(self, sentence: str, same_intent: Sequence[str] = ()) -> str:
        """A new sentence from ``sentence``; ``same_intent`` holds sentences it may be spliced with."""
        return self.pair(sentence, same_intent)[0]

    def for_teacher(self, sentence: str, same_intent: Sequence[str] = ()) -> Tuple[str, str]:
        """The new sentence and what the teacher reads to label it: the sentence itself, or with ``label_unmasked``
        its masked words shown."""
        text, shown = self.pair(sentence, same_intent)
        return text, shown if self.settings.label_unmasked else text

    def pair(self, sentence: str, same_intent: Sequence[str] = ()) -> Tuple[str, str]:
        """The new sentence and the same sentence with its masked words shown (the same draws of the generator)."""
        s = self.settings
        words = sentence.split()
        if s.recombine_prob and len(same_intent) > 1 and self.rng.random() < s.recombine_prob:
            words = self._splice(words, same_intent[self.rng.integers(len(same_intent))].split())
        out: List[str] = []
        shown: List[str] = []
        for word in words:
            draw = self.rng.random()
            if draw < s.mask_prob:
                out.append(MASK)
                shown.append(word)
                continue
            if draw < s.mask_prob + s.replace_prob and self.neighbours is not None:
                options = self.neighbours(word)
                out.append(options[self.rng.integers(len(options))] if options else word)
            elif s.typo_prob and len(word) > 2 and self.rng.random() < s.typo_prob:
                out.append(self._typo(word))
            else:
                out.append(word)
            shown.append(out[-1])
        if len(out) > 1 and self.rng.random() < s.ngram_prob:
            n = int(self.rng.integers(s.ngram_min, min(s.ngram_max, len(out)) + 1))
            start = int(self.rng.integers(0, len(out) - n + 1))
            out, shown = out[start : start + n], shown[start : start + n]
        return " ".join(out), " ".join(shown)

    def _splice(self, words: List[str], other: List[str]) -> List[str]:
        """The start of one sentence and the end of another of the same intent."""
        if not words or not other:
            return words or other
        cut = int(self.rng.integers(1, len(words) + 1))
        start = int(self.rng.integers(0, len(other)))
        return words[:cut] + other[start:]

    def _typo(self, word: str) -> str:
        """One slip of the keyboard: a letter dropped, doubled, swapped with the next, or replaced."""
        i = int(self.rng.integers(len(word)))
        kind = int(self.rng.integers(4))
        if kind == 0:
            return word[:i] + word[i + 1:]
        if kind == 1:
            return word[:i] + word[i] + word[i:]
        if kind == 2 and i < len(word) - 1:
            return word[:i] + word[i + 1] + word[i] + word[i + 2:]
        return word[:i] + "abcdefghijklmnopqrstuvwxyz"[int(self.rng.integers(26))] + word[i + 1:]


def augment_many(augmenter: RuleAugmenter, sentences: Sequence[str], count: int, rng: np.random.Generator) -> List[str]:
    """``count`` augmented sentences from training sentences drawn at random."""
    picks = rng.integers(0, len(sentences), size=count)
    return [augmenter(sentences[i]) for i in picks]
