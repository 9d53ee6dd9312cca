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
import dataclasses
import datetime
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from rasa_kd import bert
from rasa_kd.errors import ConfigError, ModelLoadError
from rasa_kd.io_utils import atomic_directory, read_json, sha256_file, write_json
from rasa_kd.provenance import fingerprint, package_versions

logger = logging.getLogger(__name__)

RECORD_FILE = "student.json"
FORMAT_VERSION = 1
KINDS = ("bilstm", "tinybert")
PAD, UNK = 0, 1
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
        teacher_vocab = len(tokenizer)
        specials = [tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id]
        used = np.zeros(teacher_vocab, dtype=bool)
        for ids in id_lists:
            used[np.asarray(ids, dtype=np.int64)] = True
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


# --- networks ------------------------------------------------------------------------------------


def build_bilstm(settings, vocab_size: int, num_labels: int, embeddings: Optional[np.ndarray], embedding_dim: int):
    """Embeddings -> stacked BiLSTM (final states of both directions) -> ReLU layer -> logits."""
    import tensorflow as tf

    layers = tf.keras.layers
    ids = layers.Input(shape=(None,), dtype=tf.int32, name="input_ids")
    initializer = tf.keras.initializers.Constant(embeddings) if embeddings is not None else "uniform"
    x = layers.Embedding(vocab_size, embedding_dim, mask_zero=True, embeddings_initializer=initializer, name="embedding")(ids)
    if settings.multichannel:
        if embeddings is None:
            raise ConfigError("'student.bilstm.multichannel' needs 'student.bilstm.embeddings: teacher'")
        static = layers.Embedding(
            vocab_size, embedding_dim, mask_zero=True, embeddings_initializer=initializer, trainable=False, name="embedding_static"
        )(ids)
        x = layers.Concatenate(name="channels")([x, static])
    for index in range(settings.layers):
        last = index == settings.layers - 1
        x = layers.Bidirectional(layers.LSTM(settings.hidden_units, return_sequences=not last), name=f"bilstm_{index}")(x)
    x = layers.Dropout(settings.dropout)(x)
    x = layers.Dense(settings.dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(settings.dropout)(x)
    logits = layers.Dense(num_labels, name="logits")(x)
    return tf.keras.Model(ids, logits, name="bilstm_student")


def tinybert_config(settings, vocab_size: int, labels: Sequence[str]):
    from transformers import BertConfig

    if settings.hidden_size % settings.heads:
        raise ConfigError(
            f"'student.tinybert.hidden_size' ({settings.hidden_size}) must be a multiple of 'heads' ({settings.heads})"
        )
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=settings.hidden_size,
        num_hidden_layers=settings.layers,
        num_attention_heads=settings.heads,
        intermediate_size=settings.intermediate_size,
        hidden_act=settings.activation,
        hidden_dropout_prob=settings.dropout,
        attention_probs_dropout_prob=settings.dropout,
        max_position_embeddings=settings.max_seq_length,
        pad_token_id=PAD,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )


def build_tinybert(settings, vocab: StudentVocab, labels: Sequence[str], teacher=None, seed: int = 0):
    """A small TF BERT classifier; embeddings (and layers, with init: teacher) from the teacher."""
    import tensorflow as tf
    from transformers import TFBertForSequenceClassification

    tf.keras.utils.set_random_seed(seed)
    model = TFBertForSequenceClassification(tinybert_config(settings, vocab.size, labels))
    model(model.dummy_inputs, training=False)
    if teacher is None:
        return model
    teacher_bert = teacher.model.bert
    teacher_config = teacher.model.config
    if settings.init == "teacher":
        _check_copyable(settings, teacher_config)
        copy_teacher_layers(model, teacher, vocab, settings)
    else:
        table = teacher_bert.embeddings.weight.numpy()[vocab.teacher_ids]
        model.bert.embeddings.weight.assign(_project(table, settings.hidden_size))
    return model


def _check_copyable(settings, teacher_config) -> None:
    for key, teacher_value in (("hidden_size", teacher_config.hidden_size), ("intermediate_size", teacher_config.intermediate_size),
                               ("heads", teacher_config.num_attention_heads)):
        if getattr(settings, key) != teacher_value:
            raise ConfigError(
                f"'student.tinybert.init: teacher' copies teacher layers, so 'student.tinybert.{key}' must be the "
                f"teacher's {teacher_value}, got {getattr(settings, key)}; use init: random for other sizes"
            )
    chosen = settings.teacher_layers
    if chosen is not None:
        if len(chosen) != settings.layers:
            raise ConfigError(f"'student.tinybert.teacher_layers' names {len(chosen)} layers but 'layers' is {settings.layers}")
        if max(chosen) >= teacher_config.num_hidden_layers:
            raise ConfigError(f"'student.tinybert.teacher_layers' {chosen}: the teacher has layers 0-{teacher_config.num_hidden_layers - 1}")


def default_teacher_layers(student_layers: int, teacher_layers: int) -> List[int]:
    """Evenly spaced teacher layers ending with the last: 3 of 6 -> [1, 3, 5] (TinyBERT's mapping)."""
    step = teacher_layers / student_layers
    return [int(round(step * (i + 1))) - 1 for i in range(student_layers)]


def copy_teacher_layers(model, teacher, vocab: StudentVocab, settings) -> None:
    teacher_bert = teacher.model.bert
    chosen = settings.teacher_layers or default_teacher_layers(settings.layers, teacher.model.config.num_hidden_layers)
    embeddings = model.bert.embeddings
    embeddings.weight.assign(teacher_bert.embeddings.weight.numpy()[vocab.teacher_ids])
    embeddings.token_type_embeddings.assign(teacher_bert.embeddings.token_type_embeddings.numpy())
    positions = teacher_bert.embeddings.position_embeddings.numpy()
    embeddings.position_embeddings.assign(positions[: embeddings.position_embeddings.shape[0]])
    embeddings.LayerNorm.set_weights(teacher_bert.embeddings.LayerNorm.get_weights())
    for student_index, teacher_index in enumerate(chosen):
        model.bert.encoder.layer[student_index].set_weights(teacher_bert.encoder.layer[teacher_index].get_weights())
    model.bert.pooler.set_weights(teacher_bert.pooler.get_weights())


def _project(table: np.ndarray, size: int) -> np.ndarray:
    """Rows of ``table`` in ``size`` dimensions: the top principal components, scaled to BERT's init."""
    if table.shape[1] == size:
        return table
    centred = table - table.mean(axis=0, keepdims=True)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    width = min(size, components.shape[0])
    projected = np.zeros((table.shape[0], size), dtype=np.float32)
    projected[:, :width] = centred @ components[:width].T
    return (projected * (0.02 / max(float(projected.std()), 1e-8))).astype(np.float32)


# --- the saved student and its inference ---------------------------------------------------------


class StudentModel:
    """A student that classifies raw text: tokenizer + vocabulary map + network + labels."""

    def __init__(self, kind: str, network, tokenizer, vocab: StudentVocab, labels: Sequence[str],
                 architecture: Dict[str, Any], record: Optional[dict] = None):
        if kind not in KINDS:
            raise ConfigError(f"student kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.network = network
        self.tokenizer = tokenizer
        self.vocab = vocab
        self.labels = list(labels)
        self.architecture = dict(architecture)
        self.record = record or {}
        self._forward = student_forward(kind, network)
        self._numpy = None  # set by use_numpy(): a copy of the weights, for serving
        self.blas_threads: Optional[int] = None  # NumPy path: at most this many BLAS threads (None: no limit)
        self._encoder = bert.Encoder(tokenizer, self.max_seq_length, self.architecture.get("special_tokens", True))
        self.special_tokens = self._encoder.special_count

    def use_numpy(self) -> "StudentModel":
        """Serve with the NumPy forward pass (weights copied now: call again after training)."""
        from rasa_kd.fast_inference import numpy_runtime

        self._numpy = numpy_runtime(self.kind, self.network)
        return self

    @property
    def runtime(self) -> str:
        return "numpy" if self._numpy is not None else "tensorflow"

    @property
    def max_seq_length(self) -> int:
        return int(self.architecture["max_seq_length"])

    def encode(self, texts: Sequence[str]) -> List[np.ndarray]:
        """Student token ids (pruned vocabulary; [CLS] ... [SEP] unless the architecture leaves them out)."""
        return self.vocab.map(self._encoder(texts))

    def logits(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        return self.logits_of_ids(self.encode(texts), batch_size)

    def logits_of_ids(self, ids: Sequence[Sequence[int]], batch_size: int = 256) -> np.ndarray:
        from rasa_kd.fast_inference import limit_blas_threads

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
        return int(self.network.count_params())

    def save(self, path: Path, overwrite: bool = False, extra: Optional[dict] = None) -> Path:
        """Write the student folder atomically: complete, or not there at all."""
        path = Path(path)
        with atomic_directory(path, overwrite=overwrite) as tmp:
            self.tokenizer.save_pretrained(str(tmp / "tokenizer"))
            np.save(tmp / "token_map.npy", self.vocab.token_map)
            np.save(tmp / "teacher_ids.npy", self.vocab.teacher_ids)
            (tmp / "vocab.txt").write_text("\n".join(self.vocab.tokens) + "\n", encoding="utf-8")
            if self.kind == "bilstm":
                self.network.save_weights(str(tmp / "weights.h5"))
                weight_files = ["weights.h5"]
            else:
                self.network.save_pretrained(str(tmp / "bert"))
                weight_files = ["bert/tf_model.h5", "bert/config.json"]
            files = {name: sha256_file(tmp / name) for name in weight_files + ["token_map.npy", "teacher_ids.npy", "vocab.txt"]}
            record = {
                **self.record,
                **(extra or {}),
                "kind": self.kind,
                "format_version": FORMAT_VERSION,
                "labels": self.labels,
                "architecture": self.architecture,
                "vocab_size": self.vocab.size,
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
        except (OSError, ValueError, KeyError) as error:
            raise ModelLoadError(f"cannot load the student weights in {path}: {error}") from None
        return cls(kind, network, tokenizer, vocab, labels, architecture, record).use_numpy()


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
    from rasa_kd.distill.config import BiLSTMSettings

    if kind == "bilstm":
        settings = BiLSTMSettings(**{f.name: architecture[f.name] for f in dataclasses.fields(BiLSTMSettings)})
        network = build_bilstm(settings, vocab.size, len(labels), None if not settings.multichannel else np.zeros(
            (vocab.size, architecture["embedding_dim"]), dtype=np.float32), architecture["embedding_dim"])
        network.load_weights(str(path / "weights.h5"))
        return network
    from transformers import TFBertForSequenceClassification

    with bert._quiet_transformers():
        return TFBertForSequenceClassification.from_pretrained(str(path / "bert"), local_files_only=True)


def student_forward(kind: str, network):
    """A traced ``(ids, mask) -> logits`` for inference (eager Keras calls cost tens of ms)."""
    import tensorflow as tf

    spec = tf.TensorSpec([None, None], tf.int32)
    if kind == "bilstm":

        @tf.function(input_signature=[spec, spec])
        def forward(input_ids, attention_mask):
            return network(input_ids, training=False)

    else:

        @tf.function(input_signature=[spec, spec])
        def forward(input_ids, attention_mask):
            return network(input_ids=input_ids, attention_mask=attention_mask, training=False).logits

    return forward
