"""Transfer sets too large to hold in memory: read, tokenised, labelled and trained on shard by shard.

A transfer set of ``compute.stream_from`` sentences or more is never loaded whole. Its file is read on
demand (:class:`TransferSetFile`); the teacher labels it into the shard cache of
:mod:`rasa_kd.distill.labelling` without keeping the logits; the student's WordPiece ids are written
once to a second shard cache (:func:`token_shards`); and the student trains from both through
``tf.data`` (:class:`ShardStream`), which loads the next shard while the current one trains. What stays
in memory grows with ``labelling.shard_size``, not with the transfer set: two shards of ids and logits,
the file's line index (one offset per 1,024 sentences) and a bit per teacher WordPiece.

The price is the batch order: an epoch visits the shards in a random order and shuffles within each
shard (length-grouped, as in memory), rather than shuffling the whole set. The augment stage writes
the transfer set in a shuffled order, so a shard is a sample of the whole set, not one intent's slice.
"""
import copy
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from rasa_kd.errors import DataError
from rasa_kd.io_utils import atomic_write, read_json, sha256_file, write_json
from rasa_kd.progress import progress_bar

logger = logging.getLogger(__name__)


class TransferSetFile(Sequence):
    """The sentences of a transfer-set file (JSON lines: text, source, intent), read from disk on demand.

    Indexing and slicing return texts (with ``teacher_texts``, what the teacher reads to label each one);
    :meth:`rows` returns ``(text, intent)`` pairs. One pass at construction counts the lines and remembers
    where every ``STRIDE``-th begins.
    """

    STRIDE = 1024

    def __init__(self, path: Path, teacher_texts: bool = False):
        self.path = Path(path)
        self.teacher_texts = teacher_texts
        if not self.path.is_file():
            raise DataError(f"transfer set {self.path} does not exist; run `rasa-kd augment` first")
        offsets, count, position = [], 0, 0
        with open(self.path, "rb") as handle:
            for line in handle:
                if count % self.STRIDE == 0:
                    offsets.append(position)
                position += len(line)
                count += 1
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self._count = count

    def __len__(self) -> int:
        return self._count

    def teacher_view(self) -> "TransferSetFile":
        """The same file, its texts read as the teacher labels them (its line index shared, not read again)."""
        view = copy.copy(self)
        view.teacher_texts = True
        return view

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(self._count)
            texts = [text for text, _ in self.rows(start, stop)]
            return texts[::step] if step != 1 else texts
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(index)
        return self.rows(index, index + 1)[0][0]

    def __iter__(self) -> Iterator[str]:
        for start in range(0, self._count, self.STRIDE):
            yield from (text for text, _ in self.rows(start, min(start + self.STRIDE, self._count)))

    def rows(self, start: int, stop: int) -> List[Tuple[str, Optional[str]]]:
        """``(text, intent)`` of lines ``[start, stop)`` (0-based)."""
        result = []
        if start >= stop:
            return result
        block = start // self.STRIDE
        with open(self.path, "rb") as handle:
            handle.seek(int(self._offsets[block]))
            for number in range(block * self.STRIDE, stop):
                line = handle.readline()
                if number < start:
                    continue
                try:
                    row = json.loads(line)
                    text = (row.get("teacher_text") or row["text"]) if self.teacher_texts else row["text"]
                    result.append((text, row.get("intent")))
                except (ValueError, KeyError, TypeError) as error:
                    raise DataError(f"{self.path}, line {number + 1}: not a transfer-set row ({error})") from None
        return result


@dataclass
class TokenShards:
    """The teacher's WordPiece ids and gold intents of a transfer set, one file per shard."""

    folder: Path
    sizes: List[int]  # sentences per shard
    used: np.ndarray  # bool [teacher vocabulary]: WordPieces the transfer set uses

    def path(self, index: int) -> Path:
        return self.folder / f"tokens-{index:06d}.npz"

    def load(self, index: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ids, offsets, gold)``: sentence i is ``ids[offsets[i]:offsets[i + 1]]``; gold -1 if none."""
        with np.load(self.path(index), allow_pickle=False) as data:
            return data["ids"], data["offsets"], data["gold"]


def _save_tokens(path: Path, id_lists: Sequence[Sequence[int]], gold: np.ndarray) -> None:
    lengths = np.array([len(ids) for ids in id_lists], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.concatenate([np.asarray(x, dtype=np.int32) for x in id_lists]) if id_lists else np.zeros(0, np.int32)
    with atomic_write(path, "wb") as handle:
        np.savez(handle, ids=ids, offsets=offsets, gold=gold.astype(np.int32))


def token_shards(transfer: TransferSetFile, teacher, max_seq_length: int, special_tokens: bool, shard_size: int,
                 cache_root: Path, progress: bool = True, transfer_sha256: Optional[str] = None) -> TokenShards:
    """Tokenise ``transfer`` with the teacher's tokenizer, shard by shard, into ``cache_root``.

    ``transfer_sha256`` is the file's checksum when the caller has it (else it is computed).

    Shards written by an earlier (killed) run of the same inputs are read instead of recomputed.
    """
    from rasa_kd.models import bert

    digest = hashlib.sha256()
    checksum = transfer_sha256 or sha256_file(transfer.path)
    for part in (teacher.fingerprint, checksum, str(max_seq_length), str(special_tokens), str(shard_size)):
        digest.update(part.encode("utf-8") + b"\0")
    folder = Path(cache_root) / f"tokens-{digest.hexdigest()[:20]}"
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"sentences": len(transfer), "shard_size": shard_size, "labels": teacher.labels}
    if (folder / "tokens.json").is_file() and read_json(folder / "tokens.json") != meta:
        raise DataError(f"{folder / 'tokens.json'} does not describe this transfer set; delete {folder}")
    write_json(folder / "tokens.json", meta)
    label_index = {label: i for i, label in enumerate(teacher.labels)}
    encoder = bert.Encoder(teacher.tokenizer, max_seq_length, special_tokens)
    used = np.zeros(len(teacher.tokenizer), dtype=bool)
    shards = TokenShards(folder, [], used)
    bar = progress_bar(enabled=progress, description="student token ids", total=len(transfer), unit="sentence")
    for index, start in enumerate(range(0, len(transfer), shard_size)):
        stop = min(start + shard_size, len(transfer))
        shards.sizes.append(stop - start)
        path = shards.path(index)
        ids = None
        if path.is_file():
            try:
                ids, offsets, gold = shards.load(index)
                if len(offsets) != stop - start + 1:
                    ids = None
            except (OSError, ValueError, KeyError):
                ids = None
        if ids is None:
            rows = transfer.rows(start, stop)
            id_lists = encoder([text for text, _ in rows])
            gold = np.array([label_index.get(intent, -1) if intent is not None else -1 for _, intent in rows], dtype=np.int32)
            _save_tokens(path, id_lists, gold)
            ids = np.concatenate([np.asarray(x, dtype=np.int64) for x in id_lists]) if id_lists else np.zeros(0, np.int64)
        used[np.asarray(ids, dtype=np.int64)] = True
        bar.update(stop - start)
    bar.close()
    return shards


class ShardStream:
    """Batches of a sharded transfer set, for :class:`rasa_kd.distill.training.Trainer`.

    An epoch draws the shard order and one seed per shard from the loop's generator up front, so the
    batch order is fixed by the seed, and a resumed epoch skips batches without reading their shards.
    ``tf.data`` reads each shard's ids, logits and gold intents, one shard ahead of training.
    """

    def __init__(self, tokens: TokenShards, logits_folder: Path, labels: int, batch_size: int):
        self.tokens, self.logits_folder, self.labels, self.batch_size = tokens, Path(logits_folder), labels, batch_size
        self.current: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = None  # the shard being trained on
        from rasa_kd.distill.labelling import _shard_path

        missing = [i for i in range(len(tokens.sizes)) if not _shard_path(self.logits_folder, i).is_file()]
        if missing:  # said now, not from inside tf.data mid-epoch
            raise DataError(f"{len(missing)} of {len(tokens.sizes)} shards of teacher logits are missing in {self.logits_folder} "
                            f"(shard {missing[0]} first); run `rasa-kd label` again")

    @property
    def examples(self) -> int:
        return int(sum(self.tokens.sizes))

    def batches_per_shard(self) -> np.ndarray:
        return np.array([math.ceil(size / self.batch_size) for size in self.tokens.sizes], dtype=np.int64)

    def steps_per_epoch(self) -> int:
        return int(self.batches_per_shard().sum())

    def _load(self, index) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        from rasa_kd.distill.labelling import _load_shard, _shard_path

        index = int(index)
        ids, offsets, gold = self.tokens.load(index)
        logits = _load_shard(_shard_path(self.logits_folder, index), self.tokens.sizes[index], self.labels)
        if logits is None:
            raise DataError(f"teacher logits for shard {index} are missing or damaged in {self.logits_folder}; "
                            "run `rasa-kd label` again")
        return ids.astype(np.int32), offsets.astype(np.int64), logits, gold.astype(np.int32)

    def epoch(self, rng: np.random.Generator, skip: int = 0) -> Iterator[np.ndarray]:
        """This epoch's batches (indices into :attr:`current`, set before each is yielded), from batch ``skip``."""
        order = rng.permutation(len(self.tokens.sizes))
        seeds = rng.integers(0, 2**63 - 1, size=len(order))
        return self._batches(order, seeds, skip)

    def _batches(self, order: np.ndarray, seeds: np.ndarray, skip: int) -> Iterator[np.ndarray]:
        import tensorflow as tf

        from rasa_kd.models.bert import length_grouped_batches

        ends = np.cumsum(self.batches_per_shard()[order])
        first = int(np.searchsorted(ends, skip, side="right"))  # the shard holding batch ``skip``
        within = skip - (int(ends[first - 1]) if first else 0)
        shards = tf.data.Dataset.from_tensor_slices(order[first:].astype(np.int64)).map(
            lambda i: tf.numpy_function(self._load, [i], [tf.int32, tf.int64, tf.float32, tf.int32]),
            num_parallel_calls=1, deterministic=True).prefetch(1)
        for position, (ids, offsets, logits, gold) in enumerate(shards.as_numpy_iterator(), first):
            self.current = (ids, offsets, logits, gold)
            plan = length_grouped_batches(np.diff(offsets), self.batch_size, np.random.default_rng(int(seeds[position])))
            yield from plan[within:]
            within = 0
        self.current = None
