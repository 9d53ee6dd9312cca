"""``rasa_kd.DistilledIntentClassifier``: distillation inside `rasa train nlu`.

Fine-tunes the teacher on the pipeline's NLU data, builds and labels a transfer set, trains the
student, and persists only the student. It runs the same stages as `rasa-kd distill`, with the
same settings, on the intent examples Rasa hands it.
"""
import logging
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Text, Type

from rasa.engine.graph import ExecutionContext
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import INTENT, TEXT
from rasa.shared.nlu.training_data.training_data import TrainingData

from rasa_kd.components.common import (
    BLAS_THREADS,
    RANKING_LENGTH,
    RASA_ADDED_KEYS,
    RasaKDComponentError,
    check_blas_threads,
    check_ranking_length,
)
from rasa_kd.components.student_intent_classifier import STUDENT_FOLDER, StudentIntentClassifier
from rasa_kd.errors import ConfigError, RasaKDError
from rasa_kd.settings import number, optional_text

logger = logging.getLogger(__name__)

# Component key -> key of the distillation config (see configs/distill/*.yml).
SECTIONS = {"teacher": "teacher", "transfer_set": "transfer_set", "labelling": "labelling",
            "bilstm": "student.bilstm", "tinybert": "student.tinybert", "training": "student.training"}


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True)
class DistilledIntentClassifier(StudentIntentClassifier):
    """Distils a BiLSTM or tiny-BERT student from a BERT teacher during `rasa train`; serves the student."""

    @classmethod
    def required_components(cls) -> List[Type]:
        """Nothing: teacher and student bring their own WordPiece tokenizer."""
        return []

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        """The component's default config; each section takes the keys of the same section of
        `rasa-kd distill`'s config (README, "Distilling a student"), and is checked when `rasa train` starts."""
        return {
            # The student: bilstm (Tang et al.) or tinybert.
            "student": "bilstm",
            # Teacher fine-tuning: model (null = packaged all-MiniLM-L6-v2), epochs (10),
            # batch_size (32), learning_rate (2e-4), warmup_ratio, weight_decay, max_seq_length, random_seed.
            "teacher": {},
            # Transfer set: size_multiplier (10), size, augmentation (rules | gpt2 | rules+gpt2 | none),
            # rules {mask_prob, replace_prob, neighbours, ngram_prob, ngram_min, ngram_max}, gpt2 {...},
            # unlabelled_file, random_seed.
            "transfer_set": {},
            # Teacher logits: batch_size, shard_size.
            "labelling": {},
            # BiLSTM: layers (1), hidden_units (300), dense_units (400), dropout, embeddings, multichannel, max_seq_length.
            "bilstm": {},
            # tiny-BERT: layers (4), hidden_size (128), heads (2), intermediate_size (512), dropout, init, teacher_layers.
            "tinybert": {},
            # Student training: epochs (30), batch_size (64), learning_rate (1e-3), schedule, loss (mse | kl),
            # temperature, alpha, early_stopping_patience (5), dev_metric, random_seed, ...
            "training": {},
            # Share of the intent examples held out to pick the best student epoch (and kept out of the
            # transfer set). 0: no hold-out; the epoch that fits the training sentences best is kept.
            "dev_fraction": 0.0,
            # Keep the whole distillation run (teacher, transfer set, logits, metrics) in this folder;
            # null: a temporary folder, deleted after training.
            "workdir": None,
            # Intents listed in `intent_ranking`; 0 lists all.
            RANKING_LENGTH: 10,
            # At most this many NumPy BLAS threads per message; null: the process's setting (all cores,
            # or OPENBLAS_NUM_THREADS). 1 suits a server whose cores are busy with other processes.
            BLAS_THREADS: None,
        }

    def __init__(
        self,
        config: Dict[Text, Any],
        name: Text,
        model_storage: ModelStorage,
        resource: Resource,
        student: Optional[Any] = None,
    ) -> None:
        """Check every setting now, so a bad one fails at the start of `rasa train`."""
        self.component_config = {**self.get_default_config(), **config}
        self._name = name
        owner = f"{type(self).__name__} ({name})"
        try:
            self.distill_config = self._distill_config(self.component_config, owner)
            self.ranking_length = check_ranking_length(self.component_config[RANKING_LENGTH], owner)
            self.blas_threads = check_blas_threads(self.component_config[BLAS_THREADS], owner)
            self.dev_fraction = number(0.0, 0.5, max_inclusive=False)("dev_fraction", self.component_config["dev_fraction"])
            self.workdir = optional_text()("workdir", self.component_config["workdir"])
        except ConfigError as error:
            message = str(error)
            raise InvalidConfigException(message if message.startswith(owner) else f"{owner}: {message}") from None
        self._model_storage = model_storage
        self._resource = resource
        self.student = student

    @classmethod
    def _distill_config(cls, config: Dict[Text, Any], owner: Text):
        from rasa_kd.distill.config import load_config

        allowed = set(cls.get_default_config()) | set(RASA_ADDED_KEYS)
        unknown = sorted(set(config) - allowed)
        if unknown:
            raise ConfigError(f"{owner}: unknown setting(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(cls.get_default_config())}")
        overrides: Dict[str, Any] = {"student.type": config["student"]}
        for key, target in SECTIONS.items():
            section = config[key]
            if section is None:
                continue
            if not isinstance(section, dict):
                raise ConfigError(f"{owner}: '{key}' must be a mapping of settings, got {section!r}")
            for name, value in section.items():
                overrides[f"{target}.{name}"] = value
        try:
            return load_config(None, overrides)
        except ConfigError as error:
            raise ConfigError(f"{owner}: {_component_key_names(str(error))}") from None

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "DistilledIntentClassifier":
        """Creates a new untrained component; checks the teacher's base model folder."""
        from rasa_kd.bert import resolve_model_dir

        component = cls(config, execution_context.node_name, model_storage, resource)
        try:
            resolve_model_dir(component.distill_config.teacher.model)
        except RasaKDError as error:
            raise InvalidConfigException(f"{cls.__name__} ({execution_context.node_name}): 'teacher.model': {error}") from None
        return component

    def train(self, training_data: TrainingData) -> Resource:
        """Run teacher, augment, label and student stages on the intent examples; persist the student."""
        from rasa_kd.data.nlu_yaml import dump_nlu_yaml
        from rasa_kd.distill import pipeline
        from rasa_kd.student import StudentModel

        examples = [(e.get(TEXT), e.get(INTENT)) for e in training_data.intent_examples if e.get(TEXT) and e.get(INTENT)]
        if not examples:
            logger.warning(f"{self._name}: no intent examples in the training data; skipping distillation.")
            return self._resource
        workdir = Path(self.workdir) if self.workdir else Path(tempfile.mkdtemp(prefix="rasa-kd-distill-"))
        try:
            data = workdir / "data"
            data.mkdir(parents=True, exist_ok=True)
            train, dev = self._split(examples)
            dump_nlu_yaml(data / "train.yml", _by_intent(train))
            paths = {"data": {"train": str(data / "train.yml"), "dev": None}}
            if dev:
                dump_nlu_yaml(data / "dev.yml", _by_intent(dev))
                paths["data"]["dev"] = str(data / "dev.yml")
            import dataclasses

            config = dataclasses.replace(self.distill_config, data=dataclasses.replace(
                self.distill_config.data, train=paths["data"]["train"], dev=paths["data"]["dev"]))
            run = workdir / "run"
            for stage in ("teacher", "augment", "label", "student"):
                logger.info(f"{self._name}: distillation stage '{stage}'")
                pipeline.run_stage(stage, config, run)
            self.student = StudentModel.load(run / STUDENT_FOLDER)
            self._source = run / STUDENT_FOLDER
            self.persist()
            summary = self.student.record.get("training", {})
            logger.info(f"{self._name}: distilled a {self.student.kind} student ({self.student.parameter_count():,} "
                        f"parameters) in {summary.get('seconds', '?')} s of student training")
        except ConfigError as error:
            raise InvalidConfigException(f"{self._name}: {_component_key_names(str(error))}") from None
        except RasaKDError as error:
            raise RasaKDComponentError(f"{self._name}: {error}") from None
        finally:
            if not self.workdir:
                shutil.rmtree(workdir, ignore_errors=True)
        return self._resource

    def _split(self, examples):
        if not self.dev_fraction:
            return examples, []
        rng = random.Random(self.distill_config.transfer_set.random_seed)
        order = list(range(len(examples)))
        rng.shuffle(order)
        cut = max(1, int(round(self.dev_fraction * len(examples))))
        held = set(order[:cut])
        return [e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held]

    def _student_folder(self) -> Path:
        return self._source


def _by_intent(pairs) -> Dict[str, List[str]]:
    grouped: Dict[str, List[str]] = {}
    for text, intent in pairs:
        grouped.setdefault(intent, []).append(text)
    return grouped


def _component_key_names(message: str) -> str:
    """'student.training.epochs' -> 'training.epochs': the keys as this component spells them."""
    for section in ("bilstm", "tinybert", "training"):
        message = message.replace(f"'student.{section}.", f"'{section}.")
    return message.replace("'student.type'", "'student'")
