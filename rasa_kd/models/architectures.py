"""The students' architectures: the settings that build a student network, and that loading one needs."""
import dataclasses
from dataclasses import dataclass
from typing import List, Optional

from rasa_kd.settings import (boolean, integer, number, one_of, optional_boolean, optional_int_list, optional_integer,
                              optional_one_of, setting)

# Below this many training examples a BiLSTM starts from the teacher's contextual rows, frozen, and a tiny-BERT
# from them projected (for_examples): the BiLSTM gained 3.3-4.9, 2.8-4.4 and 1.1 points on few-shot Sara with
# 551-561, 1,054 and 1,595 examples, the tiny-BERT 0.3-2.5 on eight sets (benchmarks/NOTES.md); larger sets are
# unmeasured, and the gain shrinks as the data grows.
CONTEXTUAL_BELOW = 2000

# LSTM units per direction below and from CONTEXTUAL_BELOW examples. On fifteen few-shot sets a 200-unit BiLSTM
# scored as the 300 units of Tang et al. and the thesis (mean change -0.03 points, -0.7 to +0.6 a set), answered a
# message 1.5x faster at batch 1 and trained 1.25x faster on the example bot (benchmarks/NOTES.md, "Ninth round");
# larger data keeps the shape RESULTS.md measured.
SMALL_DATA_HIDDEN_UNITS = 200
HIDDEN_UNITS = 300


@dataclass
class BiLSTMSettings:
    """Tang et al. 2019 / the thesis: embeddings -> BiLSTM -> ReLU layer -> logits."""

    layers: int = setting(1, "stacked BiLSTM layers", integer(1, 8))
    hidden_units: Optional[int] = setting(
        None, "LSTM units per direction; null: 200 below 2,000 training examples, else 300", optional_integer(1, 4096))
    dense_units: int = setting(400, "units of the ReLU layer", integer(1, 8192))
    dropout: float = setting(0.1, "dropout after the BiLSTM and the ReLU layer", number(0.0, 1.0, max_inclusive=False))
    embeddings: Optional[str] = setting(
        None, "initial embeddings: teacher (the teacher's WordPiece rows), contextual (what the teacher's layers make of "
        "each WordPiece read alone) or random; null: contextual below 2,000 training examples, else teacher",
        optional_one_of("teacher", "contextual", "random"))
    multichannel: bool = setting(False, "a frozen copy of the teacher embeddings beside the trained ones", boolean())
    train_embeddings: Optional[bool] = setting(
        None, "train the embedding rows (false: they stay as they started, like the rows of words the transfer set "
        "never showed); null: false below 2,000 training examples unless the embeddings are random, else true",
        optional_boolean())
    vocabulary: str = setting(
        "teacher", "WordPieces the student reads: teacher (every one the teacher knows; those the transfer set never "
        "showed keep the rows they would have started from, stored at 4 bits) or transfer_set (the rest read as [UNK])",
        one_of("teacher", "transfer_set"))
    max_seq_length: int = setting(64, "WordPiece tokens per sentence", integer(4, 512))

    def for_examples(self, count: int) -> "BiLSTMSettings":
        """These settings with ``hidden_units``, ``embeddings`` and ``train_embeddings`` chosen for ``count``
        training examples where null.

        A small bot's transfer set shows a few thousand WordPieces in the phrasings of a few hundred
        sentences: too little to learn what words mean. The teacher's contextual view of every WordPiece,
        kept frozen, puts the words the transfer set showed and those it never did (the vocabulary
        extension) in one space the BiLSTM learns to read; nor does such a set need 300 units a direction.
        Measured on few-shot sets in benchmarks/NOTES.md.
        """
        small = count < CONTEXTUAL_BELOW
        hidden = self.hidden_units or (SMALL_DATA_HIDDEN_UNITS if small else HIDDEN_UNITS)
        embeddings = self.embeddings or ("contextual" if small else "teacher")
        train = self.train_embeddings
        if train is None:
            train = not (small and embeddings != "random")
        return dataclasses.replace(self, hidden_units=hidden, embeddings=embeddings, train_embeddings=train)


@dataclass
class TinyBertSettings:
    """A small BERT: 4 layers, hidden 128, 2 heads, intermediate 512 (the thesis: 5, 204, 3, 750)."""

    # 4 x 128 rather than the thesis's 5 x 204: as accurate on Sara (test 83.0 vs 82.4) with about 13x
    # fewer multiply-adds per token than the MiniLM teacher, so it is >= 10x faster at batch 1 where
    # 5 x 204 (4.5x fewer) cannot be; measured in benchmarks/NOTES.md ("tiny-BERT against the 10x target").
    layers: int = setting(4, "Transformer layers", integer(1, 48))
    hidden_size: int = setting(128, "hidden size (a multiple of heads)", integer(8, 4096))
    heads: int = setting(2, "attention heads", integer(1, 64))
    intermediate_size: int = setting(512, "feed-forward size", integer(8, 16384))
    dropout: float = setting(0.1, "hidden and attention dropout", number(0.0, 1.0, max_inclusive=False))
    # gelu_new is BERT's original tanh approximation of GELU: 4x cheaper than the exact erf form in the
    # NumPy serving path, and indistinguishable in accuracy. Students saved with "gelu" still load.
    activation: str = setting("gelu_new", "feed-forward activation: gelu_new (tanh approximation) or gelu (exact, erf)",
                              one_of("gelu_new", "gelu"))
    init: str = setting(
        "random",
        "random, or teacher: copy teacher layers (needs the teacher's hidden and intermediate sizes)",
        one_of("random", "teacher"),
    )
    teacher_layers: Optional[List[int]] = setting(None, "teacher layers (0-based) copied into the student; default: evenly spaced", optional_int_list(0))
    embeddings: Optional[str] = setting(
        None, "with init: random, the rows its embeddings start from, projected to hidden_size: teacher (the teacher's "
        "WordPiece rows) or contextual (what the teacher's layers make of each WordPiece read alone); null: contextual "
        "below 2,000 training examples, else teacher", optional_one_of("teacher", "contextual"))
    vocabulary: str = setting(
        "teacher", "WordPieces the student reads: teacher (every one the teacher knows; those the transfer set never "
        "showed keep the rows they would have started from, stored at 4 bits) or transfer_set (the rest read as [UNK])",
        one_of("teacher", "transfer_set"))
    max_seq_length: int = setting(64, "WordPiece tokens per sentence", integer(4, 512))

    def for_examples(self, count: int) -> "TinyBertSettings":
        """These settings with ``embeddings`` chosen for ``count`` training examples where null: contextual
        rows below 2,000 (few-shot Sara and SNIPS, benchmarks/NOTES.md), else the teacher's input rows."""
        return dataclasses.replace(self, embeddings=self.embeddings or ("contextual" if count < CONTEXTUAL_BELOW else "teacher"))
