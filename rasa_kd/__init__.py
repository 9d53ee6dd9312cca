"""rasa-kd: distil BERT intent classifiers into small, fast students for Rasa.

Components are imported on first use (``rasa_kd.BertIntentClassifier``), so ``import rasa_kd`` and
the command line start without loading Rasa or TensorFlow.
"""
import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "BertIntentClassifier": "rasa_kd.components.bert_intent_classifier",
    "StudentIntentClassifier": "rasa_kd.components.student_intent_classifier",
    "DistilledIntentClassifier": "rasa_kd.components.distilled_intent_classifier",
    "StudentModel": "rasa_kd.models.student",
    "Teacher": "rasa_kd.models.teacher",
    "TeacherSettings": "rasa_kd.models.teacher",
    "fine_tune_teacher": "rasa_kd.distill.teacher_training",
    "distil_examples": "rasa_kd.distill.pipeline",
    "load_config": "rasa_kd.distill.config",
    "convert_dataset": "rasa_kd.data.convert",
    "load_intent_examples": "rasa_kd.data.nlu_yaml",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rasa_kd' has no attribute {name!r}")
