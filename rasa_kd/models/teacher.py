"""The BERT teacher: fine-tuning on labelled sentences, logits for any sentences, saving and loading.

Used by the Rasa component :class:`rasa_kd.components.bert_intent_classifier.BertIntentClassifier`
and by the distillation trainer; neither needs Rasa to call it.
"""
import dataclasses
import datetime
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rasa_kd import bert
from rasa_kd.errors import DataError, ModelLoadError
from rasa_kd.io_utils import atomic_directory, read_json, sha256_file, write_json
from rasa_kd.provenance import fingerprint, package_versions
from rasa_kd.settings import from_mapping, integer, number, optional_text, setting

logger = logging.getLogger(__name__)

RECORD_FILE = "rasa_kd.json"
FORMAT_VERSION = 1


@dataclass
class TeacherSettings:
    """How to fine-tune the teacher."""

    model: Optional[str] = setting(
        None, "local Hugging Face folder of a BERT-family model; null = the packaged all-MiniLM-L6-v2", optional_text()
    )
    epochs: int = setting(10, "passes over the training data", integer(1, 1000))
    batch_size: int = setting(32, "sentences per training step", integer(1, 4096))
    learning_rate: float = setting(2e-4, "peak AdamW learning rate (2e-4 suits the 6-layer default; ~3e-5 for BERT-base)", number(0.0, 1.0, min_inclusive=False))
    warmup_ratio: float = setting(0.1, "share of steps with linear warm-up, then linear decay to 0", number(0.0, 1.0, max_inclusive=False))
    weight_decay: float = setting(0.01, "AdamW weight decay (not on biases and LayerNorm)", number(0.0, 1.0))
    max_seq_length: int = setting(64, "WordPiece tokens kept per sentence, [CLS] and [SEP] included", integer(8, 512))
    random_seed: int = setting(42, "seed for initialisation, dropout and batch order", integer(0, 2**32 - 1))

    @classmethod
    def from_dict(cls, values: Dict[str, Any], owner: str = "teacher", ignore: tuple = ()) -> "TeacherSettings":
        return from_mapping(cls, values, owner, ignore)


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    seconds: float
    dev_accuracy: Optional[float] = None


@dataclass
class TrainingHistory:
    examples: int
    steps: int
    seconds: float = 0.0
    epochs: List[EpochRecord] = field(default_factory=list)


class Teacher:
    """A fine-tuned BERT sequence classifier with its tokenizer and intent labels."""

    def __init__(self, model, tokenizer, labels: Sequence[str], settings: TeacherSettings, record: Optional[dict] = None):
        self.model = model
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.settings = settings
        self.record = record or {}
        self._forward = bert.classifier_forward(model)
        self._encoder = bert.Encoder(tokenizer, settings.max_seq_length)
        self.special_tokens = self._encoder.special_count  # [CLS] and [SEP]

    @property
    def max_seq_length(self) -> int:
        return self.settings.max_seq_length

    def encode(self, texts: Sequence[str]) -> List[List[int]]:
        """WordPiece ids of each text, truncated to ``max_seq_length``."""
        return self._encoder(texts)

    def logits(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Teacher logits, float32 [len(texts), len(labels)], in the order of ``texts``."""
        return self.logits_of_ids(self.encode(texts), batch_size, progress)

    def logits_of_ids(self, ids: Sequence[Sequence[int]], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Logits for already encoded texts, batched by length."""
        out = np.zeros((len(ids), len(self.labels)), dtype=np.float32)
        batches = bert.length_grouped_batches([len(x) for x in ids], batch_size)
        for batch in _progress(batches, progress, "teacher logits"):
            input_ids, mask = bert.pad([ids[i] for i in batch], self.tokenizer.pad_token_id)
            out[batch] = self._forward(input_ids, mask).numpy()
        return out

    def probabilities(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Softmax of the logits."""
        return softmax(self.logits(texts, batch_size))

    def parameter_count(self) -> int:
        return int(self.model.count_params())

    @property
    def fingerprint(self) -> str:
        return self.record.get("fingerprint", "")

    def save(self, path: Path, overwrite: bool = False, extra: Optional[dict] = None) -> Path:
        """Write the teacher to ``path``, atomically: the folder is complete or absent."""
        path = Path(path)
        with atomic_directory(path, overwrite=overwrite) as tmp:
            self.model.save_pretrained(str(tmp))
            self.tokenizer.save_pretrained(str(tmp))
            files = {name: sha256_file(tmp / name) for name in (bert.TF_WEIGHTS, "config.json")}
            record = {
                **self.record,
                **(extra or {}),
                "kind": "teacher",
                "format_version": FORMAT_VERSION,
                "labels": self.labels,
                "settings": dataclasses.asdict(self.settings),
                "files": files,
                "fingerprint": fingerprint([files[bert.TF_WEIGHTS], self.labels]),
                "versions": package_versions(),
            }
            write_json(tmp / RECORD_FILE, record)  # written last: its presence marks a whole folder
        self.record = record
        return path

    @classmethod
    def load(cls, path: Path, verify: bool = True) -> "Teacher":
        """Load a teacher saved by :meth:`save`; a missing or damaged file raises ModelLoadError."""
        path = Path(path)
        record = _read_record(path)
        for name, expected in record.get("files", {}).items():
            file = path / name
            if not file.is_file():
                raise ModelLoadError(f"teacher folder {path} is missing {name}; save or train the teacher again")
            if verify and sha256_file(file) != expected:
                raise ModelLoadError(f"{file} does not match its checksum in {RECORD_FILE}; the file is damaged")
        from transformers import TFAutoModelForSequenceClassification

        settings = TeacherSettings.from_dict(record["settings"], owner=str(path / RECORD_FILE))
        try:
            with bert._quiet_transformers():
                model = TFAutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"cannot load the teacher weights in {path}: {error}") from error
        return cls(model, bert.load_tokenizer(path), record["labels"], settings, record)


def _read_record(path: Path) -> dict:
    file = path / RECORD_FILE
    if not path.is_dir():
        raise ModelLoadError(f"teacher folder {path} does not exist")
    if not file.is_file():
        raise ModelLoadError(f"{path} has no {RECORD_FILE}: it is not a saved rasa-kd teacher, or saving it did not finish")
    try:
        record = read_json(file)
    except ValueError as error:
        raise ModelLoadError(f"{file} is not valid JSON ({error}); the folder is damaged") from error
    if record.get("kind") != "teacher":
        raise ModelLoadError(f"{file} describes a {record.get('kind')!r}, not a teacher")
    if record.get("format_version", 0) > FORMAT_VERSION:
        raise ModelLoadError(f"{file} has format_version {record['format_version']}; this rasa-kd reads up to {FORMAT_VERSION}")
    return record


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``."""
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


def _progress(items, enabled: bool, description: str):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=description, unit="batch", leave=False)


def _progress_bar(total: int, enabled: bool, description: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="step")


def fine_tune_teacher(
    texts: Sequence[str],
    intents: Sequence[str],
    settings: TeacherSettings,
    dev: Optional[Tuple[Sequence[str], Sequence[str]]] = None,
    progress: bool = True,
) -> Tuple[Teacher, TrainingHistory]:
    """Fine-tune ``settings.model`` to predict ``intents`` from ``texts``.

    Labels are the sorted distinct intents, so label ids do not depend on data order. ``dev``
    (texts, intents) is scored after every epoch for the record; it does not change training.
    """
    import tensorflow as tf
    from transformers import create_optimizer

    if len(texts) != len(intents):
        raise DataError(f"got {len(texts)} texts but {len(intents)} intents")
    labels = sorted(set(intents))
    if len(labels) < 2:
        raise DataError(f"the teacher needs at least 2 intents to classify, found {len(labels)}: {labels}")
    model_dir = bert.resolve_model_dir(settings.model)
    tf.keras.utils.set_random_seed(settings.random_seed)
    model = bert.load_sequence_classifier(model_dir, labels)
    max_positions = getattr(model.config, "max_position_embeddings", 512)
    if settings.max_seq_length > max_positions:
        from rasa_kd.errors import ConfigError

        raise ConfigError(f"'max_seq_length' is {settings.max_seq_length} but {model_dir} supports at most {max_positions}")
    tokenizer = bert.load_tokenizer(model_dir)
    teacher = Teacher(model, tokenizer, labels, settings, {"base_model": str(model_dir)})

    ids = teacher.encode(texts)
    index = {label: i for i, label in enumerate(labels)}
    targets = np.array([index[intent] for intent in intents], dtype=np.int32)
    steps_per_epoch = math.ceil(len(ids) / settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    optimizer, _ = create_optimizer(
        init_lr=settings.learning_rate,
        num_train_steps=total_steps,
        num_warmup_steps=int(settings.warmup_ratio * total_steps),
        weight_decay_rate=settings.weight_decay,
    )
    train_step = _train_step(model, optimizer)
    rng = np.random.default_rng(settings.random_seed)
    lengths = [len(x) for x in ids]
    history = TrainingHistory(examples=len(ids), steps=total_steps)
    started = time.perf_counter()
    bar = _progress_bar(total_steps, progress, "fine-tuning teacher")
    for epoch in range(1, settings.epochs + 1):
        epoch_start, losses = time.perf_counter(), []
        for batch in bert.length_grouped_batches(lengths, settings.batch_size, rng):
            input_ids, mask = bert.pad([ids[i] for i in batch], tokenizer.pad_token_id)
            losses.append(float(train_step(input_ids, mask, targets[batch])))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses[-20:]):.4f}", refresh=False)
        record = EpochRecord(epoch, float(np.mean(losses)), time.perf_counter() - epoch_start)
        if dev is not None:
            predicted = teacher.logits(dev[0]).argmax(axis=1)
            record.dev_accuracy = float(np.mean([labels[p] == gold for p, gold in zip(predicted, dev[1])]))
        history.epochs.append(record)
        logger.log(logging.INFO if dev is not None else logging.DEBUG, "teacher epoch %d: loss %.4f%s", epoch, record.loss,
                    f", dev accuracy {record.dev_accuracy:.4f}" if record.dev_accuracy is not None else "")
    if bar is not None:
        bar.close()
    history.seconds = time.perf_counter() - started
    teacher.record.update(
        {
            "trained": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "training": dataclasses.asdict(history),
        }
    )
    return teacher, history


def _train_step(model, optimizer):
    import tensorflow as tf

    spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[spec, spec, tf.TensorSpec([None], tf.int32)])
    def step(input_ids, attention_mask, targets):
        with tf.GradientTape() as tape:
            logits = model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=tf.zeros_like(input_ids),
                training=True,
            ).logits
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        gradients, _ = tf.clip_by_global_norm(gradients, 1.0)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    return step
