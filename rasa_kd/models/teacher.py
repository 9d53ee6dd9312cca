"""The BERT teacher: its settings, logits for any sentences, saving and loading.

Fine-tuning it is the trainer's job (:func:`rasa_kd.distill.teacher_training.fine_tune_teacher`);
loading and serving it needs only this module.
"""
import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from rasa_kd.models import bert
from rasa_kd.errors import ModelLoadError
from rasa_kd.io_utils import atomic_directory, read_json, sha256_file, write_json
from rasa_kd.provenance import fingerprint, package_versions
from rasa_kd.progress import progress_bar
from rasa_kd.settings import from_mapping, integer, number, optional_boolean, optional_integer, optional_text, setting

logger = logging.getLogger(__name__)

RECORD_FILE = "rasa_kd.json"
FORMAT_VERSION = 1
# Below this many training examples a teacher gets smaller batches (for_examples).
SMALL_DATA = 1000
# Every teacher gets epochs enough for about this many steps (10 to 30 epochs): with 10 epochs of 32 from 1,000
# examples up, Sara-20 (1,054 examples) got 500 steps where Sara-10 and Sara-40 got 740 and 750, and was
# underconfident (ECE 0.09-0.12; benchmarks/NOTES.md, "Sara-20's teacher").
TARGET_STEPS = 700


@dataclass
class TeacherSettings:
    """How to fine-tune the teacher."""

    model: Optional[str] = setting(
        None, "local Hugging Face folder of a BERT-family model; null = the packaged all-MiniLM-L6-v2", optional_text()
    )
    epochs: Optional[int] = setting(
        None, "passes over the training data; null: enough for about 700 steps, 10 at least and 30 at most (a small "
        "bot needs more, smaller steps; 10 from about 1,500 examples up)", optional_integer(1, 1000))
    batch_size: Optional[int] = setting(None, "sentences per training step; null: 16 below 1,000 examples, else 32",
                                        optional_integer(1, 4096))
    learning_rate: float = setting(2e-4, "peak AdamW learning rate (2e-4 suits the 6-layer default; ~3e-5 for BERT-base)", number(0.0, 1.0, min_inclusive=False))
    warmup_ratio: float = setting(0.1, "share of steps with linear warm-up, then linear decay to 0", number(0.0, 1.0, max_inclusive=False))
    train_embeddings: Optional[bool] = setting(
        None, "fine-tune the embedding layer (WordPiece, position, LayerNorm); false: it stays the base model's; "
        "null: false below 1,000 examples (a fifth less time a step, no loss measured on few-shot sets), else true",
        optional_boolean())
    weight_decay: float = setting(0.01, "AdamW weight decay (not on biases and LayerNorm)", number(0.0, 1.0))
    max_seq_length: int = setting(64, "WordPiece tokens kept per sentence, [CLS] and [SEP] included", integer(8, 512))
    random_seed: int = setting(42, "seed for initialisation, dropout and batch order", integer(0, 2**32 - 1))
    outliers: float = setting(
        0.5, "synthetic out-of-scope sentences per training example (made from the training sentences and the "
        "vocabulary), trained towards equal confidence in every intent, so that messages no intent covers get low "
        "confidence (outlier exposure); 0: off", number(0.0, 100.0))
    outlier_weight: float = setting(0.5, "weight of the out-of-scope sentences' loss (cross-entropy to the uniform "
                                    "distribution) beside the intents' cross-entropy", number(0.0, 100.0))
    masked_copies: float = setting(
        0.0, "copies of the training sentences per training example with words hidden behind [MASK] (each word at "
        "0.1, one at least), trained on their intents: the transfer set's masking rule makes such sentences, and a "
        "teacher trained with outliers alone reads them as out of scope; 0: off", number(0.0, 100.0))
    # 0.03 took the few-shot teachers' and BiLSTMs' ECE down by 0.006 and 0.005 on average (19 sets) with no accuracy lost
    # (benchmarks/NOTES.md, "Label smoothing on the teacher"); 0.1 lost accuracy and calibration.
    label_smoothing: float = setting(
        0.03, "share of each training example's target spread evenly over the intents (Szegedy et al. 2016): a cap "
        "on the teacher's confidence, which without it is higher than its accuracy on new messages; 0: off",
        number(0.0, 1.0, max_inclusive=False))
    out_of_scope_intent: Optional[str] = setting(
        None, "an intent whose examples are out of scope (Sara's `out_of_scope`): trained like the synthetic ones, "
        "it is not an intent the classifier answers; FallbackClassifier answers `nlu_fallback` for such messages",
        optional_text())
    out_of_scope_file: Optional[str] = setting(
        None, "out-of-scope sentences to train on beside the synthetic ones (one a line, or Rasa YAML with its "
        "intents ignored)", optional_text())

    @classmethod
    def from_dict(cls, values: Dict[str, Any], owner: str = "teacher", ignore: tuple = ()) -> "TeacherSettings":
        return from_mapping(cls, values, owner, ignore)

    def for_examples(self, count: int) -> "TeacherSettings":
        """These settings with ``epochs``, ``batch_size`` and ``train_embeddings`` chosen for ``count`` training
        examples where they are null.

        Measured on few-shot sets (benchmarks/NOTES.md): 10 epochs of 32, about 200 steps on a 600-example
        bot, left the teacher 11 points below 30 epochs of 16 on Sara with 10 examples per intent.
        """
        small = count < SMALL_DATA
        batch_size = self.batch_size or (16 if small else 32)
        epochs = self.epochs
        if epochs is None:
            # Out-of-scope sentences and masked copies share the epochs: a bot below 10 epochs' worth of steps keeps its budget, a large one pays.
            steps_per_epoch = max(1, math.ceil((count + self.outlier_count(count) + self.masked_count(count)) / batch_size))
            epochs = min(30, max(10, math.ceil(TARGET_STEPS / steps_per_epoch)))
        # A few hundred sentences move few of the 30,522 embedding rows, and their gradient and AdamW update
        # are a fifth of a step's time (benchmarks/NOTES.md, "rasa train in five minutes").
        train_embeddings = not small if self.train_embeddings is None else self.train_embeddings
        return dataclasses.replace(self, epochs=epochs, batch_size=batch_size, train_embeddings=train_embeddings)

    def outlier_count(self, count: int) -> int:
        """Synthetic out-of-scope sentences the teacher trains on beside ``count`` training examples."""
        return int(round(self.outliers * count))

    def masked_count(self, count: int) -> int:
        """Masked copies of training sentences the teacher trains on beside ``count`` training examples."""
        return int(round(self.masked_copies * count))


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
        for batch in progress_bar(batches, progress, "teacher logits", unit="batch", leave=False):
            input_ids, mask = bert.pad([ids[i] for i in batch], self.tokenizer.pad_token_id)
            out[batch] = self._forward(input_ids, mask).numpy()
        return out

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

        # A teacher saved before outlier exposure existed was trained without it.
        settings = TeacherSettings.from_dict({"outliers": 0.0, **record["settings"]}, owner=str(path / RECORD_FILE))
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
