"""``rasa_kd.DistilledIntentClassifier``: distillation inside `rasa train nlu`.

Hands the pipeline's intent examples to :func:`rasa_kd.distill.pipeline.distil_examples` (the same
stages and settings as `rasa-kd distill`) and keeps only the student; loading, serving and
persisting are the drop-in :class:`StudentIntentClassifier`'s.
"""
import logging
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Text, Type

from rasa.engine.graph import ExecutionContext
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import INTENT, TEXT
from rasa.shared.nlu.training_data.training_data import TrainingData

from rasa_kd.components.common import RasaKDComponentError, StudentServingSettings
from rasa_kd.components.student_intent_classifier import STUDENT_FOLDER, StudentIntentClassifier
from rasa_kd.errors import ConfigError, RasaKDError
from rasa_kd.settings import defaults, mapping, number, one_of, optional_text, setting

logger = logging.getLogger(__name__)

# Component key -> section of the distillation config (docs/configuration.md).
SECTIONS = {"teacher": "teacher", "transfer_set": "transfer_set", "labelling": "labelling",
            "bilstm": "student.bilstm", "tinybert": "student.tinybert", "training": "student.training"}


@dataclass
class DistilledComponentSettings(StudentServingSettings):
    """The settings of ``rasa_kd.DistilledIntentClassifier``; each section takes the keys of the same
    section of `rasa-kd distill`'s config."""

    student: str = setting("bilstm", "the student architecture", one_of("bilstm", "tinybert"))
    teacher: Dict[str, Any] = setting({}, "teacher fine-tuning: the keys of the config's `teacher` section", mapping())
    transfer_set: Dict[str, Any] = setting({}, "the transfer set: the keys of the config's `transfer_set` section", mapping())
    labelling: Dict[str, Any] = setting({}, "teacher logits: the keys of the config's `labelling` section", mapping())
    bilstm: Dict[str, Any] = setting({}, "BiLSTM student: the keys of the config's `student.bilstm` section", mapping())
    tinybert: Dict[str, Any] = setting({}, "tiny-BERT student: the keys of the config's `student.tinybert` section", mapping())
    training: Dict[str, Any] = setting({}, "student training: the keys of the config's `student.training` section", mapping())
    dev_fraction: float = setting(
        0.0, "share of the intent examples held out to pick the best student epoch (and kept out of the transfer set); "
        "0: no hold-out, the epoch that fits the training sentences best is kept", number(0.0, 0.5, max_inclusive=False))
    workdir: Optional[str] = setting(
        None, "keep the whole distillation run (teacher, transfer set, logits) in this folder, and resume from it; "
        "null: a temporary folder, deleted after training", optional_text())


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True)
class DistilledIntentClassifier(StudentIntentClassifier):
    """Distils a BiLSTM or tiny-BERT student from a BERT teacher during `rasa train`; serves the student."""

    settings_class = DistilledComponentSettings

    @classmethod
    def required_components(cls) -> List[Type]:
        """Nothing: teacher and student bring their own WordPiece tokenizer."""
        return []

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        """Every setting with its default (docs/configuration.md says what each does); checked when `rasa train` starts."""
        return defaults(DistilledComponentSettings)

    def __init__(
        self,
        config: Dict[Text, Any],
        name: Text,
        model_storage: ModelStorage,
        resource: Resource,
        student: Optional[Any] = None,
    ) -> None:
        """Check every setting now, so a bad one fails at the start of `rasa train`."""
        super().__init__(config, name, model_storage, resource, student)
        try:
            self.distill_config = self._distill_config(self.settings)
        except ConfigError as error:
            raise InvalidConfigException(f"{type(self).__name__} ({name}): {_component_key_names(str(error))}") from None
        self._source: Optional[Path] = None

    @staticmethod
    def _distill_config(settings: DistilledComponentSettings):
        from rasa_kd.distill.config import load_config

        overrides: Dict[str, Any] = {"student.type": settings.student}
        for key, target in SECTIONS.items():
            for name, value in getattr(settings, key).items():
                overrides[f"{target}.{name}"] = value
        return load_config(None, overrides)

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "DistilledIntentClassifier":
        """Creates a new untrained component; checks the teacher's base model folder."""
        from rasa_kd.models.bert import resolve_model_dir

        component = cls(config, execution_context.node_name, model_storage, resource)
        try:
            resolve_model_dir(component.distill_config.teacher.model)
        except RasaKDError as error:
            raise InvalidConfigException(f"{cls.__name__} ({execution_context.node_name}): 'teacher.model': {error}") from None
        return component

    def train(self, training_data: TrainingData) -> Resource:
        """Distil a student from the intent examples (teacher, transfer set, logits, student); persist the student."""
        from rasa_kd.distill.pipeline import distil_examples

        examples = [(e.get(TEXT), e.get(INTENT)) for e in training_data.intent_examples if e.get(TEXT) and e.get(INTENT)]
        if not examples:
            logger.warning(f"{self._name}: no intent examples in the training data; skipping distillation.")
            return self._resource
        train, dev = self._split(examples)
        with tempfile.TemporaryDirectory(prefix="rasa-kd-distill-") as scratch:
            run = Path(self.settings.workdir or scratch) / "run"
            try:
                self.student = distil_examples([t for t, _ in train], [i for _, i in train], self.distill_config, run,
                                               dev=([t for t, _ in dev], [i for _, i in dev]) if dev else None)
            except ConfigError as error:
                raise InvalidConfigException(f"{self._name}: {_component_key_names(str(error))}") from None
            except RasaKDError as error:
                raise RasaKDComponentError(f"{self._name}: {error}") from None
            self._source = run / STUDENT_FOLDER
            self.persist()
        summary = self.student.record.get("training", {})
        logger.info(f"{self._name}: distilled a {self.student.kind} student ({self.student.parameter_count():,} "
                    f"parameters) in {summary.get('seconds', '?')} s of student training")
        picked = self.student.record.get("fallback_threshold")
        if picked:
            logger.info(f"{self._name}: FallbackClassifier threshold {picked['threshold']:.2f} keeps "
                        f"{100 * picked['keep']:.0f}% of the student's answers on {picked['messages']} held-out "
                        f"{'examples (dev_fraction)' if picked['split'] == 'dev' else picked['split']}; it is recorded in "
                        f"the student's student.json")
        else:
            logger.info(f"{self._name}: no held-out examples, so no FallbackClassifier threshold was picked; "
                        f"set dev_fraction or transfer_set.threshold_holdout to have one picked and recorded")
        return self._resource

    def _split(self, examples):
        if not self.settings.dev_fraction:
            return examples, []
        rng = random.Random(self.distill_config.transfer_set.random_seed)
        order = list(range(len(examples)))
        rng.shuffle(order)
        cut = max(1, int(round(self.settings.dev_fraction * len(examples))))
        held = set(order[:cut])
        return [e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held]

    def _student_folder(self) -> Path:
        return self._source


def _component_key_names(message: str) -> str:
    """'student.training.epochs' -> 'training.epochs': the keys as this component spells them."""
    for section in ("bilstm", "tinybert", "training"):
        message = message.replace(f"'student.{section}.", f"'{section}.")
    return message.replace("'student.type'", "'student'")
