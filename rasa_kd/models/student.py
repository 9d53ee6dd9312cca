"""Distilled students (BiLSTM and tiny-BERT): their vocabulary, networks, saved format and inference.

A student folder holds everything needed to classify raw text, and nothing is fetched to load it:

    student.json      kind, labels in order, architecture, teacher fingerprint, versions, checksums
                      (written last: a folder without it is incomplete)
    tokenizer/        the teacher's WordPiece tokenizer
    token_map.npy     teacher WordPiece id -> student id (pruned vocabulary; unknown -> [UNK])
    vocab.txt         the student's tokens in id order
    weights.h5        BiLSTM weights (Keras), or
    bert/             tiny-BERT weights and config (Transformers)
"""
import contextlib
import dataclasses
import datetime
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rasa_kd.errors import ConfigError, ModelLoadError
from rasa_kd.io_utils import atomic_directory, read_json, sha256_file, write_json
from rasa_kd.models import bert
from rasa_kd.models.architectures import CONTEXTUAL_BELOW
from rasa_kd.models.networks import PAD, UNK, bilstm_settings, build_bilstm, student_forward
from rasa_kd.provenance import fingerprint, package_versions

logger = logging.getLogger(__name__)

RECORD_FILE = "student.json"
FORMAT_VERSION = 1
KINDS = ("bilstm", "tinybert")
# NumPy wins while TensorFlow's per-call overhead dominates (serving: one message at a time);
# TensorFlow's fused, multi-threaded kernels win on large batches (Sara tiny-BERT at batch 256:
# 0.38 ms per sentence in TensorFlow, 1.4 ms in NumPy; batch 1: 2.4 ms vs 1.3 ms).
NUMPY_MAX_BATCH = 32


@dataclass
class StudentVocab:
    """The WordPiece tokens the student knows: the ones its transfer set uses, plus specials."""

    teacher_ids: np.ndarray  # int64 [student vocab]: teacher id of each student token
    token_map: np.ndarray  # int32 [teacher vocab]: student id of each teacher token (UNK if pruned)
    tokens: List[str]

    @property
    def size(self) -> int:
        return len(self.tokens)

    @classmethod
    def from_teacher_ids(cls, id_lists: Sequence[Sequence[int]], tokenizer) -> "StudentVocab":
        """Keep every teacher token the transfer set uses; [MASK] maps to [UNK] (Tang et al.)."""
        used = np.zeros(len(tokenizer), dtype=bool)
        for ids in id_lists:
            used[np.asarray(ids, dtype=np.int64)] = True
        return cls.from_used(used, tokenizer)

    @classmethod
    def from_used(cls, used: np.ndarray, tokenizer) -> "StudentVocab":
        """The vocabulary of the teacher tokens marked in ``used`` (bool [teacher vocabulary])."""
        teacher_vocab = len(tokenizer)
        specials = [tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id]
        used = np.array(used, dtype=bool)
        used[specials] = False
        if tokenizer.mask_token_id is not None:
            used[tokenizer.mask_token_id] = False
        teacher_ids = np.concatenate([np.array(specials, dtype=np.int64), np.flatnonzero(used)])
        token_map = np.full(teacher_vocab, UNK, dtype=np.int32)
        token_map[teacher_ids] = np.arange(len(teacher_ids), dtype=np.int32)
        tokens = tokenizer.convert_ids_to_tokens(teacher_ids.tolist())
        return cls(teacher_ids, token_map, tokens)

    def map(self, id_lists: Sequence[Sequence[int]]) -> List[np.ndarray]:
        return [self.token_map[np.asarray(ids, dtype=np.int64)] for ids in id_lists]


@dataclass
class VocabExtension:
    """Embedding rows for the teacher's WordPieces that the transfer set never showed, so that the
    student reads them as themselves rather than as [UNK]: the rows they would have started training
    from (the teacher's, projected to a tiny-BERT's width), quantised with one scale per row.

    Stored at 4 bits a value, two to a byte: rows no training step touched only need to point the right
    way, and on the few-shot sets 4 bits scored as int8 did (benchmarks/NOTES.md) at half the size.
    Files written at int8 (no ``bits`` entry) load as they were.
    """

    FILE = "vocab_extension.npz"
    BITS = 4

    teacher_ids: np.ndarray  # int64 [rows]
    rows: np.ndarray  # int8 [rows, width], within +-(2 ** (bits - 1) - 1)
    scales: np.ndarray  # float32 [rows]: a row is rows[i] * scales[i]

    @classmethod
    def quantise(cls, teacher_ids: np.ndarray, table: np.ndarray, bits: int = BITS) -> "VocabExtension":
        if bits not in (4, 8):
            raise ValueError(f"a vocabulary extension is stored at 4 or 8 bits, not {bits}")
        top = 2 ** (bits - 1) - 1
        scales = np.maximum(np.abs(table).max(axis=1), 1e-12) / top
        rows = np.clip(np.rint(table / scales[:, None]), -top, top).astype(np.int8)
        return cls(np.asarray(teacher_ids, dtype=np.int64), rows, scales.astype(np.float32))

    def table(self) -> np.ndarray:
        """The rows as float32 [rows, width]."""
        return self.rows.astype(np.float32) * self.scales[:, None]

    def save(self, path: Path) -> None:
        arrays = {"teacher_ids": self.teacher_ids, "scales": self.scales}
        if np.abs(self.rows).max(initial=0) <= 7:
            arrays.update(rows=_pack_nibbles(self.rows), bits=np.int8(4), width=np.int32(self.rows.shape[1]))
        else:
            arrays["rows"] = self.rows
        with open(path, "wb") as handle:  # compressed: about a tenth smaller again
            np.savez_compressed(handle, **arrays)

    @classmethod
    def load(cls, path: Path) -> "VocabExtension":
        with np.load(path, allow_pickle=False) as data:
            rows = data["rows"]
            if "bits" in data.files and int(data["bits"]) == 4:
                rows = _unpack_nibbles(rows, int(data["width"]))
            return cls(data["teacher_ids"], rows, data["scales"])


def _pack_nibbles(rows: np.ndarray) -> np.ndarray:
    """int8 values in [-7, 7] -> uint8, two values a byte (a row of odd width gets a zero appended)."""
    if rows.shape[1] % 2:
        rows = np.concatenate([rows, np.zeros((rows.shape[0], 1), dtype=rows.dtype)], axis=1)
    shifted = (rows.astype(np.int16) + 8).astype(np.uint8)  # 1..15
    return (shifted[:, 0::2] << 4) | shifted[:, 1::2]


def _unpack_nibbles(packed: np.ndarray, width: int) -> np.ndarray:
    """The inverse of _pack_nibbles: uint8 [rows, ceil(width / 2)] -> int8 [rows, width]."""
    values = np.empty((packed.shape[0], packed.shape[1] * 2), dtype=np.int16)
    values[:, 0::2] = packed >> 4
    values[:, 1::2] = packed & 0x0F
    return (values[:, :width] - 8).astype(np.int8)


def unextended_ids(vocab: StudentVocab, tokenizer) -> np.ndarray:
    """Teacher ids a vocabulary extension covers: every WordPiece the student lacks, but [MASK] (read as
    [UNK], as in training) and the [unusedN] placeholders, which no text produces."""
    missing = np.ones(len(tokenizer), dtype=bool)
    missing[vocab.teacher_ids] = False
    if tokenizer.mask_token_id is not None:
        missing[tokenizer.mask_token_id] = False
    for token, index in tokenizer.get_vocab().items():
        if token.startswith("[unused") and index < len(missing):
            missing[index] = False
    return np.flatnonzero(missing)


def uses_special_tokens(kind: str) -> bool:
    """Whether a student of ``kind`` reads [CLS] and [SEP]: a BiLSTM reads nothing from them, and leaving
    them out saves two of its serial steps."""
    return kind == "tinybert"


def new_student(kind: str, settings, teacher, texts: Optional[Sequence[str]], seed: int,
                record: Optional[dict] = None, used: Optional[np.ndarray] = None,
                acceleration=None, cache_dir: Optional[Path] = None) -> Tuple["StudentModel", List[List[int]]]:
    """An untrained student of ``teacher`` and the teacher's WordPiece ids of ``texts`` (its transfer set).

    A streamed transfer set passes ``texts=None`` and the WordPieces it uses as ``used`` (bool [teacher
    vocabulary]); the ids returned are then empty. A tiny-BERT is built under ``acceleration``'s
    mixed-precision policy when it has one (:class:`rasa_kd.distill.distribute.Acceleration`).

    The vocabulary keeps the WordPieces ``texts`` use; the embeddings start from the teacher's rows
    (``embeddings: teacher``) or its contextual rows (``contextual``; settings left null resolve as for
    2,000 examples or more, the pipeline resolves them for its data), projected to a tiny-BERT's width,
    unless the tiny-BERT copies the teacher's layers (``init: teacher``). ``seed`` fixes the initialisation.
    Contextual rows are kept in ``cache_dir`` when given (``contextual_table``).
    """
    import tensorflow as tf

    from rasa_kd.models.networks import build_tinybert, default_teacher_layers, embedding_source, use_checkpointable_dropout

    if kind not in KINDS:
        raise ConfigError(f"student kind must be one of {KINDS}, got {kind!r}")
    settings = settings.for_examples(CONTEXTUAL_BELOW)  # what the caller left null: as for a larger bot
    special_tokens = uses_special_tokens(kind)
    if texts is None:
        teacher_ids, vocab = [], StudentVocab.from_used(used, teacher.tokenizer)
    else:
        teacher_ids = bert.encode(teacher.tokenizer, texts, settings.max_seq_length, special_tokens)
        vocab = StudentVocab.from_teacher_ids(teacher_ids, teacher.tokenizer)
    source = embedding_source(kind, settings, teacher, vocab.teacher_ids, cache_dir)
    use_checkpointable_dropout()
    tf.keras.utils.set_random_seed(seed)
    labels = teacher.labels
    architecture = {**dataclasses.asdict(settings), "special_tokens": special_tokens}
    if kind == "bilstm":
        width = int(teacher.model.get_input_embeddings().weight.shape[1])
        initial = source(vocab.teacher_ids) if settings.embeddings != "random" else None
        network = build_bilstm(settings, vocab.size, len(labels), initial, width)
        architecture = {**dataclasses.asdict(settings), "embedding_dim": width, "special_tokens": special_tokens}
    else:
        initial = source(vocab.teacher_ids) if settings.init == "random" else None
        with acceleration.building() if acceleration is not None else contextlib.nullcontext():
            network = build_tinybert(settings, vocab, labels, teacher, seed, embeddings=initial)
        if settings.init == "teacher" and not settings.teacher_layers:
            architecture["teacher_layers"] = default_teacher_layers(settings.layers, teacher.model.config.num_hidden_layers)
    student = StudentModel(kind, network, teacher.tokenizer, vocab, labels, architecture, record)
    if getattr(settings, "vocabulary", "transfer_set") == "teacher" and (kind == "tinybert" or settings.embeddings != "random"):
        # Kept for after training: the rows the WordPieces the transfer set lacks would have started from.
        student.extension_source = source
    return student, teacher_ids


class StudentModel:
    """A student that classifies raw text: tokenizer + vocabulary map + network + labels."""

    def __init__(self, kind: str, network, tokenizer, vocab: StudentVocab, labels: Sequence[str],
                 architecture: Dict[str, Any], record: Optional[dict] = None, extension: Optional[VocabExtension] = None):
        if kind not in KINDS:
            raise ConfigError(f"student kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.network = network  # what training changes and saves: the rows of ``vocab`` only
        self.tokenizer = tokenizer
        self.vocab = vocab
        self.labels = list(labels)
        self.architecture = dict(architecture)
        self.record = record or {}
        # Logits are divided by it, so confidences on new sentences match the teacher's (fitted after training).
        self.temperature = float(self.record.get("calibration", {}).get("temperature", 1.0))
        self.extension_source = None  # set by new_student when the vocabulary is to be extended after training
        self._numpy = None  # set by use_numpy(): a copy of the weights, for serving
        self.blas_threads: Optional[int] = None  # NumPy path: at most this many BLAS threads (None: no limit)
        self._encoder = bert.Encoder(tokenizer, self.max_seq_length, self.architecture.get("special_tokens", True))
        self.special_tokens = self._encoder.special_count
        self._extend(extension)

    def _extend(self, extension: Optional[VocabExtension]) -> None:
        """Serve with ``extension``'s rows after the trained ones (None: the trained vocabulary alone)."""
        from rasa_kd.models.networks import extended_network

        self.extension = extension
        self._token_map = self.vocab.token_map
        served = self.network
        if extension is not None:
            self._token_map = self.vocab.token_map.copy()
            self._token_map[extension.teacher_ids] = self.vocab.size + np.arange(len(extension.teacher_ids), dtype=np.int32)
            # Every embedding table gets the rows (a multichannel BiLSTM's frozen copy too).
            served = extended_network(self.kind, self.network, self.architecture, self.labels, extension.table())
        self._served = served
        self._forward = student_forward(self.kind, served)
        if self._numpy is not None:
            self.use_numpy()

    def extend_vocabulary(self) -> "StudentModel":
        """After training: give every WordPiece of the teacher that the transfer set lacked the row it
        would have started from (needs the ``extension_source`` that new_student set)."""
        if self.extension_source is None:
            return self
        ids = unextended_ids(self.vocab, self.tokenizer)
        self._extend(VocabExtension.quantise(ids, self.extension_source(ids)) if len(ids) else None)
        return self

    def use_numpy(self) -> "StudentModel":
        """Serve with the NumPy forward pass (weights copied now: call again after training)."""
        from rasa_kd.models.numpy_runtime import numpy_runtime

        self._numpy = numpy_runtime(self.kind, self._served, trained_rows=self.vocab.size)
        return self

    @property
    def runtime(self) -> str:
        return "numpy" if self._numpy is not None else "tensorflow"

    @property
    def max_seq_length(self) -> int:
        return int(self.architecture["max_seq_length"])

    def encode(self, texts: Sequence[str]) -> List[np.ndarray]:
        """Student token ids ([CLS] ... [SEP] unless the architecture leaves them out); a WordPiece the student
        has no row for is [UNK]."""
        return [self._token_map[np.asarray(ids, dtype=np.int64)] for ids in self._encoder(texts)]

    def logits(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        return self.logits_of_ids(self.encode(texts), batch_size)

    def logits_of_ids(self, ids: Sequence[Sequence[int]], batch_size: int = 256) -> np.ndarray:
        """The network's logits divided by the student's temperature (1 until calibrated)."""
        logits = self._network_logits(ids, batch_size)
        return logits if self.temperature == 1.0 else logits / np.float32(self.temperature)

    def _network_logits(self, ids: Sequence[Sequence[int]], batch_size: int) -> np.ndarray:
        from rasa_kd.models.numpy_runtime import limit_blas_threads

        if len(ids) == 1 and self._numpy is not None:  # serving: one message, no padding
            single = np.asarray(ids[0], dtype=np.int32)[None, :]
            with limit_blas_threads(self.blas_threads):
                return self._numpy(single, np.ones_like(single)).astype(np.float32, copy=False)
        out = np.zeros((len(ids), len(self.labels)), dtype=np.float32)
        for batch in bert.length_grouped_batches([len(x) for x in ids], batch_size):
            input_ids, mask = bert.pad([ids[i] for i in batch], PAD)
            if self._numpy is not None and len(batch) <= NUMPY_MAX_BATCH:
                with limit_blas_threads(self.blas_threads):
                    out[batch] = self._numpy(input_ids, mask)
            else:
                out[batch] = self._forward(input_ids, mask).numpy()
        return out

    def parameter_count(self) -> int:
        """Parameters of the network as it serves (vocabulary extension included)."""
        return int(self._served.count_params())

    def save(self, path: Path, overwrite: bool = False, extra: Optional[dict] = None) -> Path:
        """Write the student folder atomically: complete, or not there at all."""
        path = Path(path)
        with atomic_directory(path, overwrite=overwrite) as tmp:
            # legacy_format: vocab.txt and the settings, not tokenizer.json (0.7 MB that loading rebuilds
            # from vocab.txt in milliseconds, to the same ids: tests/test_vocabulary.py).
            self.tokenizer.save_pretrained(str(tmp / "tokenizer"), legacy_format=True)
            np.save(tmp / "token_map.npy", self.vocab.token_map)
            np.save(tmp / "teacher_ids.npy", self.vocab.teacher_ids)
            (tmp / "vocab.txt").write_text("\n".join(self.vocab.tokens) + "\n", encoding="utf-8")
            if self.kind == "bilstm":
                self.network.save_weights(str(tmp / "weights.h5"))
                weight_files = ["weights.h5"]
            else:
                self.network.save_pretrained(str(tmp / "bert"))
                weight_files = ["bert/tf_model.h5", "bert/config.json"]
            vocab_files = ["token_map.npy", "teacher_ids.npy", "vocab.txt"]
            if self.extension is not None:
                self.extension.save(tmp / VocabExtension.FILE)
                vocab_files.append(VocabExtension.FILE)
            files = {name: sha256_file(tmp / name) for name in weight_files + vocab_files}
            record = {
                **self.record,
                **(extra or {}),
                "kind": self.kind,
                "format_version": FORMAT_VERSION,
                "labels": self.labels,
                "architecture": self.architecture,
                "vocab_size": self.vocab.size,
                "vocab_extension": len(self.extension.teacher_ids) if self.extension is not None else 0,
                "parameters": self.parameter_count(),
                "files": files,
                "fingerprint": fingerprint([files[weight_files[0]], self.labels]),
                "saved": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "versions": package_versions(),
            }
            write_json(tmp / RECORD_FILE, record)  # last: marks the folder complete
        self.record = record
        return path

    @classmethod
    def load(cls, path: Path, verify: bool = True) -> "StudentModel":
        """Load a saved student; a missing, partial or damaged folder raises ModelLoadError naming the file."""
        path = Path(path)
        record = read_student_record(path)
        for name, expected in record.get("files", {}).items():
            file = path / name
            if not file.is_file():
                raise ModelLoadError(f"student folder {path} is missing {name}; copy the whole folder written by `rasa-kd student`")
            if verify and sha256_file(file) != expected:
                raise ModelLoadError(f"{file} does not match its checksum in {RECORD_FILE}; the student folder is damaged")
        if not (path / "tokenizer").is_dir():
            raise ModelLoadError(f"student folder {path} is missing tokenizer/")
        tokenizer = bert.load_tokenizer(path / "tokenizer")
        try:
            token_map = np.load(path / "token_map.npy", allow_pickle=False)
            teacher_ids = np.load(path / "teacher_ids.npy", allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"cannot read the vocabulary files in {path}: {error}") from None
        tokens = (path / "vocab.txt").read_text(encoding="utf-8").splitlines()
        vocab = StudentVocab(teacher_ids, token_map, tokens)
        kind, labels, architecture = record["kind"], record["labels"], record["architecture"]
        try:
            network = _load_network(path, kind, architecture, vocab, labels)
            extension = VocabExtension.load(path / VocabExtension.FILE) if (path / VocabExtension.FILE).is_file() else None
        except (OSError, ValueError, KeyError) as error:
            raise ModelLoadError(f"cannot load the student weights in {path}: {error}") from None
        return cls(kind, network, tokenizer, vocab, labels, architecture, record, extension).use_numpy()


def read_student_record(path: Path) -> dict:
    """The ``student.json`` of a student folder, checked for kind and format version."""
    path = Path(path)
    file = path / RECORD_FILE
    if not path.is_dir():
        raise ModelLoadError(f"student folder {path} does not exist")
    if not file.is_file():
        raise ModelLoadError(
            f"{path} has no {RECORD_FILE}: it is not a rasa-kd student, or writing it did not finish; "
            "point to the folder written by `rasa-kd student` (OUT/student)"
        )
    try:
        record = read_json(file)
    except ValueError as error:
        raise ModelLoadError(f"{file} is not valid JSON ({error}); the student folder is damaged") from None
    if record.get("kind") not in KINDS:
        raise ModelLoadError(f"{file}: 'kind' is {record.get('kind')!r}, expected one of {KINDS}")
    if record.get("format_version", 0) > FORMAT_VERSION:
        raise ModelLoadError(f"{file} has format_version {record['format_version']}; this rasa-kd reads up to {FORMAT_VERSION}")
    for key in ("labels", "architecture"):
        if key not in record:
            raise ModelLoadError(f"{file} has no '{key}'; the student folder is damaged")
    return record


def _load_network(path: Path, kind: str, architecture: Dict[str, Any], vocab: StudentVocab, labels: Sequence[str]):
    if kind == "bilstm":
        settings = bilstm_settings(architecture)
        network = build_bilstm(settings, vocab.size, len(labels), None if not settings.multichannel else np.zeros(
            (vocab.size, architecture["embedding_dim"]), dtype=np.float32), architecture["embedding_dim"])
        network.load_weights(str(path / "weights.h5"))
        return network
    from transformers import TFBertForSequenceClassification

    with bert._quiet_transformers():
        return TFBertForSequenceClassification.from_pretrained(str(path / "bert"), local_files_only=True)
