"""``rasa_kd.BertIntentClassifier``: the BERT teacher as a Rasa intent classifier."""
import dataclasses
import logging
from typing import Any, Dict, List, Optional, Text, Type

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import INTENT, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from rasa_kd.components.common import (
    RasaKDComponentError,
    ServingSettings,
    check_component_config,
    set_intents,
    set_no_intents,
)
from rasa_kd.errors import ConfigError, RasaKDError
from rasa_kd.models.teacher import TeacherSettings
from rasa_kd.settings import defaults

logger = logging.getLogger(__name__)

TEACHER_FOLDER = "teacher"


@dataclasses.dataclass
class BertComponentSettings(ServingSettings, TeacherSettings):
    """The settings of ``rasa_kd.BertIntentClassifier``: how to fine-tune the teacher, and how to answer."""


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True)
class BertIntentClassifier(GraphComponent, IntentClassifier):
    """Fine-tunes a BERT-family model on the pipeline's intents; tokenizes text itself."""

    @classmethod
    def required_components(cls) -> List[Type]:
        """Nothing: the classifier brings its own WordPiece tokenizer."""
        return []

    @staticmethod
    def required_packages() -> List[Text]:
        """Python packages the component imports."""
        return ["tensorflow", "transformers"]

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        """Every setting with its default (docs/configuration.md says what each does); checked when `rasa train` starts."""
        return defaults(BertComponentSettings)

    def __init__(
        self,
        config: Dict[Text, Any],
        name: Text,
        model_storage: ModelStorage,
        resource: Resource,
        teacher: Optional[Any] = None,
    ) -> None:
        """Check the config; ``teacher`` is a trained :class:`rasa_kd.models.teacher.Teacher` or None."""
        self.component_config = {**self.get_default_config(), **config}
        component_settings = check_component_config(BertComponentSettings, self.component_config, f"{type(self).__name__} ({name})")
        self.settings = TeacherSettings(**{f.name: getattr(component_settings, f.name) for f in dataclasses.fields(TeacherSettings)})
        self.ranking_length = component_settings.ranking_length
        self._name = name
        self._model_storage = model_storage
        self._resource = resource
        self.teacher = teacher

    def _check_model_folder(self) -> None:
        """Fail at the start of `rasa train` if the base model cannot be found (not at load time:
        a trained model carries its own weights)."""
        from rasa_kd.models.bert import resolve_model_dir

        try:
            resolve_model_dir(self.settings.model)
        except RasaKDError as error:
            raise InvalidConfigException(f"{BertIntentClassifier.__name__} ({self._name}): 'model': {error}") from None

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "BertIntentClassifier":
        """Creates a new untrained component (see parent class for full docstring)."""
        component = cls(config, execution_context.node_name, model_storage, resource)
        component._check_model_folder()
        return component

    def train(self, training_data: TrainingData) -> Resource:
        """Fine-tune the teacher on the intent examples and persist it."""
        from rasa_kd.distill.teacher_training import fine_tune_teacher

        examples = [e for e in training_data.intent_examples if e.get(TEXT) and e.get(INTENT)]
        if not examples:
            logger.warning(f"{self._name}: no intent examples in the training data; skipping training.")
            return self._resource
        texts = [e.get(TEXT) for e in examples]
        intents = [e.get(INTENT) for e in examples]
        try:
            self.teacher, history = fine_tune_teacher(texts, intents, self.settings)
        except ConfigError as error:
            raise InvalidConfigException(f"{self._name}: {error}") from None
        except RasaKDError as error:
            raise RasaKDComponentError(f"{self._name}: {error}") from None
        logger.info(
            f"{self._name}: fine-tuned on {len(texts)} examples of {len(self.teacher.labels)} intents "
            f"in {history.seconds:.1f} s (final loss {history.epochs[-1].loss:.4f})."
        )
        self.persist()
        return self._resource

    def process(self, messages: List[Message]) -> List[Message]:
        """Set ``intent`` and ``intent_ranking`` on each message."""
        if self.teacher is None:
            return set_no_intents(messages)
        return set_intents(messages, self.teacher.encode, self.teacher.logits_of_ids, self.teacher.labels, self.ranking_length,
                           self.teacher.special_tokens)

    def persist(self) -> None:
        """Save the teacher (weights, tokenizer, labels, record) into the model storage."""
        if self.teacher is None:
            return
        with self._model_storage.write_to(self._resource) as model_dir:
            self.teacher.save(model_dir / TEACHER_FOLDER, overwrite=True, extra={"rasa_component": self._name})

    @classmethod
    def load(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> "BertIntentClassifier":
        """Load the trained teacher from the model storage (see parent class for full docstring)."""
        from rasa_kd.models.teacher import Teacher

        try:
            with model_storage.read_from(resource) as model_dir:
                try:
                    teacher = Teacher.load(model_dir / TEACHER_FOLDER)
                except RasaKDError as error:
                    raise RasaKDComponentError(f"{execution_context.node_name}: {error}") from None
        except ValueError:
            # Only Rasa's storage raises ValueError here: it has no resource when training was
            # skipped (no intent examples). Say so rather than fail later.
            logger.warning(
                f"{execution_context.node_name}: the model holds no trained teacher (training was skipped); "
                "it will predict no intent."
            )
            return cls(config, execution_context.node_name, model_storage, resource)
        component = cls(config, execution_context.node_name, model_storage, resource, teacher)
        # The model's own settings (e.g. max_seq_length) are what it was trained with.
        component.settings = dataclasses.replace(component.settings, **dataclasses.asdict(teacher.settings))
        return component
