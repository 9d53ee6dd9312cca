"""``rasa_kd.StudentIntentClassifier``: a student written by `rasa-kd distill` as a drop-in Rasa
intent classifier."""
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Text, Type

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import INTENT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from rasa_kd.components.common import (
    RasaKDComponentError,
    StudentServingSettings,
    check_component_config,
    set_intents,
    set_no_intents,
)
from rasa_kd.errors import RasaKDError
from rasa_kd.settings import defaults, optional_text, setting

logger = logging.getLogger(__name__)

STUDENT_FOLDER = "student"
STUDENT_PATH = "student_path"


@dataclass
class StudentComponentSettings(StudentServingSettings):
    """The settings of ``rasa_kd.StudentIntentClassifier``."""

    student_path: Optional[str] = setting(
        None, "the folder a distillation wrote (OUT/student of `rasa-kd distill`), relative to the directory `rasa train` "
        "runs in; `rasa train` copies it into the model archive", optional_text())


def check_student_labels(student_labels: List[str], data_intents: List[str], owner: Text) -> None:
    """An intent of the NLU data that the student cannot predict is an error; the reverse a warning."""
    missing = sorted(set(data_intents) - set(student_labels))
    if missing:
        raise RasaKDComponentError(
            f"{owner}: the student cannot predict the intent(s) {', '.join(map(repr, missing))} of the NLU "
            f"data (it knows: {', '.join(student_labels)}). Distil a student on this bot's data "
            "(rasa-kd distill), or use rasa_kd.DistilledIntentClassifier."
        )
    extra = sorted(set(student_labels) - set(data_intents))
    if extra:
        logger.warning(
            f"{owner}: the student also predicts intent(s) that are not in the NLU data: {', '.join(extra)}"
        )


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True)
class StudentIntentClassifier(GraphComponent, IntentClassifier):
    """Classifies intents with a distilled BiLSTM or tiny-BERT student; needs no other component."""

    @classmethod
    def required_components(cls) -> List[Type]:
        """Nothing: the student brings its own WordPiece tokenizer."""
        return []

    @staticmethod
    def required_packages() -> List[Text]:
        """Python packages the component imports."""
        return ["tensorflow", "transformers"]

    settings_class = StudentComponentSettings

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        """Every setting with its default (docs/configuration.md says what each does); checked when `rasa train` starts."""
        return defaults(StudentComponentSettings)

    def __init__(
        self,
        config: Dict[Text, Any],
        name: Text,
        model_storage: ModelStorage,
        resource: Resource,
        student: Optional[Any] = None,
    ) -> None:
        """Check the config; ``student`` is a loaded :class:`rasa_kd.models.student.StudentModel` or None."""
        self.component_config = {**self.get_default_config(), **config}
        self._name = name
        self.settings = check_component_config(self.settings_class, self.component_config, f"{type(self).__name__} ({name})")
        self.ranking_length = self.settings.ranking_length
        self.blas_threads = self.settings.blas_threads
        self._model_storage = model_storage
        self._resource = resource
        self.student = student

    @property
    def student(self) -> Optional[Any]:
        """The loaded :class:`rasa_kd.models.student.StudentModel`, or None before training."""
        return self._student

    @student.setter
    def student(self, student: Optional[Any]) -> None:
        if student is not None:
            student.blas_threads = self.blas_threads
        self._student = student

    def _student_folder(self) -> Path:
        path = self.settings.student_path
        if path is None:
            raise InvalidConfigException(
                f"{type(self).__name__} ({self._name}): set '{STUDENT_PATH}' to the folder a distillation wrote "
                f"(OUT/student of `rasa-kd distill`), got {path!r}"
            )
        return Path(path).expanduser()

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "StudentIntentClassifier":
        """Creates the component and checks the student folder, so a bad folder fails at the start of `rasa train`."""
        from rasa_kd.models.student import StudentModel

        component = cls(config, execution_context.node_name, model_storage, resource)
        folder = component._student_folder()
        try:
            component.student = StudentModel.load(folder)
        except RasaKDError as error:
            raise RasaKDComponentError(f"{cls.__name__} ({execution_context.node_name}): '{STUDENT_PATH}': {error}") from None
        return component

    def train(self, training_data: TrainingData) -> Resource:
        """Check the student's labels against the NLU data's intents and copy it into the model."""
        intents = sorted({e.get(INTENT) for e in training_data.intent_examples} - {None})
        check_student_labels(self.student.labels, intents, f"{type(self).__name__} ({self._name})")
        self.persist()
        return self._resource

    def process(self, messages: List[Message]) -> List[Message]:
        """Set ``intent`` and ``intent_ranking`` on each message."""
        if self.student is None:
            return set_no_intents(messages)
        return set_intents(messages, self.student.encode, self.student.logits_of_ids, self.student.labels, self.ranking_length,
                           self.student.special_tokens)

    def persist(self) -> None:
        """Copy the student folder, byte for byte, into the model storage."""
        source = self._student_folder()
        with self._model_storage.write_to(self._resource) as model_dir:
            target = model_dir / STUDENT_FOLDER
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(source, target)

    @classmethod
    def load(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> "StudentIntentClassifier":
        """Load the student from the model archive (the original folder is not needed)."""
        from rasa_kd.models.student import StudentModel

        try:
            with model_storage.read_from(resource) as model_dir:
                try:
                    student = StudentModel.load(model_dir / STUDENT_FOLDER)
                except RasaKDError as error:
                    raise RasaKDComponentError(f"{execution_context.node_name}: {error}") from None
        except ValueError:
            # Only Rasa's storage raises ValueError here: the resource was never persisted.
            logger.warning(f"{execution_context.node_name}: the model holds no student; it will predict no intent.")
            return cls(config, execution_context.node_name, model_storage, resource)
        return cls(config, execution_context.node_name, model_storage, resource, student)
