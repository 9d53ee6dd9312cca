"""rasa_kd.StudentIntentClassifier and rasa_kd.DistilledIntentClassifier with tiny models."""
import json
import shutil

import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from rasa_kd.components.common import RasaKDComponentError
from rasa_kd.components.distilled_intent_classifier import DistilledIntentClassifier
from rasa_kd.components.student_intent_classifier import StudentIntentClassifier
from tests.tiny_models import INTENT_EXAMPLES, TEST_EXAMPLES, intent_pairs

NODE = "train_StudentIntentClassifier0"
ODD_TEXTS = ["", "  \t\n ", "pizza " * 2000, "😀🍕 pizza", "\x00\x1b[31m hi \u2028 bye", "\x07"]


@pytest.fixture()
def storage(tmp_path):
    return LocalModelStorage.create(tmp_path)


@pytest.fixture()
def context():
    return ExecutionContext(GraphSchema({}), "model-id", node_name=NODE)


def training_data(examples=INTENT_EXAMPLES):
    return TrainingData([Message.build(text=t, intent=i) for i, texts in examples.items() for t in texts])


def process(component, texts):
    return component.process([Message.build(text=t) for t in texts])


@pytest.fixture(params=["bilstm", "tinybert"])
def student_dir(request, bilstm_run, tinybert_run, tmp_path):
    """A copy of a tiny student folder (tests may delete or damage it)."""
    run = bilstm_run if request.param == "bilstm" else tinybert_run
    return shutil.copytree(run[0] / "student", tmp_path / f"student-{request.param}")


def make_student_component(student_dir, storage, context, **config):
    return StudentIntentClassifier.create(
        {**StudentIntentClassifier.get_default_config(), "student_path": None if student_dir is None else str(student_dir), **config},
        storage, Resource(NODE), context)


def test_student_train_persist_load_predicts_the_same_without_the_original_folder(student_dir, storage, context):
    component = make_student_component(student_dir, storage, context)
    component.train(training_data())
    texts = intent_pairs()[0] + [t for e in TEST_EXAMPLES.values() for t in e]
    before = process(component, texts)
    shutil.rmtree(student_dir)  # the model storage holds its own copy
    loaded = StudentIntentClassifier.load(component.component_config, storage, Resource(NODE), context)
    after = process(loaded, texts)
    assert [m.get("intent") for m in before] == [m.get("intent") for m in after]
    assert [m.get("intent_ranking") for m in before] == [m.get("intent_ranking") for m in after]
    correct = sum(m.get("intent")["name"] == i for m, i in zip(before, intent_pairs()[1]))
    assert correct >= 0.8 * len(intent_pairs()[1])


def test_student_output_contract_and_odd_texts(student_dir, storage, context):
    component = make_student_component(student_dir, storage, context, ranking_length=2)
    component.train(training_data())
    for text, message in zip(ODD_TEXTS, process(component, ODD_TEXTS)):
        intent, ranking = message.get("intent"), message.get("intent_ranking")
        json.dumps(message.as_dict(only_output_properties=True))
        if text.strip() and text != "\x07":
            assert intent["name"] in INTENT_EXAMPLES and type(intent["confidence"]) is float
            assert len(ranking) == 2 and ranking[0] == intent
            assert ranking[0]["confidence"] >= ranking[1]["confidence"]
        else:
            assert intent == {"name": None, "confidence": 0.0} and ranking == []


def test_an_intent_the_student_cannot_predict_is_an_error_naming_it(student_dir, storage, context, caplog):
    component = make_student_component(student_dir, storage, context)
    with pytest.raises(RasaKDComponentError, match="cannot predict the intent\\(s\\) 'ask_weather'"):
        component.train(training_data({**INTENT_EXAMPLES, "ask_weather": ["is it raining"]}))
    fewer = {k: v for k, v in INTENT_EXAMPLES.items() if k != "goodbye"}
    component.train(training_data(fewer))
    assert "also predicts intent(s) that are not in the NLU data: goodbye" in caplog.text


@pytest.mark.parametrize("damage, message", [
    (lambda d: shutil.rmtree(d), "student folder .* does not exist"),
    (lambda d: (d / "student.json").unlink(), "has no student.json: it is not a rasa-kd student, or writing it did not finish"),
    (lambda d: (d / "token_map.npy").unlink(), "is missing token_map.npy"),
    (lambda d: (d / "vocab.txt").write_text("tampered"), "vocab.txt does not match its checksum"),
    (lambda d: (d / "student.json").write_text("{not json"), "student.json is not valid JSON"),
])
def test_a_missing_partial_or_corrupted_student_fails_at_train_start(student_dir, storage, context, damage, message):
    damage(student_dir)
    with pytest.raises(RasaKDComponentError, match=f"'student_path': .*{message}"):
        make_student_component(student_dir, storage, context)


def test_student_config_errors(storage, context, bilstm_run):
    with pytest.raises(InvalidConfigException, match="set 'student_path' to the folder a distillation wrote"):
        make_student_component(None, storage, context)
    with pytest.raises(InvalidConfigException, match="unknown setting\\(s\\) 'student'"):
        make_student_component(bilstm_run[0] / "student", storage, context, student="bilstm")
    with pytest.raises(InvalidConfigException, match="'ranking_length' must be an integer >= 0"):
        make_student_component(bilstm_run[0] / "student", storage, context, ranking_length="all")
    with pytest.raises(InvalidConfigException, match="'blas_threads' must be .*1 to 256.*got 0"):
        make_student_component(bilstm_run[0] / "student", storage, context, blas_threads=0)


def test_blas_threads_reaches_the_student_after_create_and_load(storage, context, bilstm_run):
    component = make_student_component(bilstm_run[0] / "student", storage, context, blas_threads=1)
    assert component.student.blas_threads == 1
    component.train(training_data())
    loaded = StudentIntentClassifier.load(component.component_config, storage, Resource(NODE), context)
    assert loaded.student.blas_threads == 1
    assert make_student_component(bilstm_run[0] / "student", storage, context).student.blas_threads is None
    assert process(loaded, ["i want a pizza"])[0].get("intent")["name"] is not None


# --- distillation inside rasa train ------------------------------------------------------------

DISTILLED = {
    "teacher": {"epochs": 25, "batch_size": 8, "learning_rate": 2e-3, "max_seq_length": 16, "train_embeddings": True},
    "transfer_set": {"size": 300},
    "bilstm": {"hidden_units": 16, "dense_units": 16, "max_seq_length": 16},
    "tinybert": {"layers": 1, "hidden_size": 16, "heads": 2, "intermediate_size": 32, "max_seq_length": 16},
    "training": {"epochs": 15, "batch_size": 16, "learning_rate": 5e-3},
}


def make_distilled(tiny_bert_dir, storage, context, **config):
    settings = {**DistilledIntentClassifier.get_default_config(), **DISTILLED, **config}
    if isinstance(settings["teacher"], dict):
        settings["teacher"] = {**settings["teacher"], "model": str(tiny_bert_dir)}
    return DistilledIntentClassifier.create(settings, storage, Resource(NODE), context)


@pytest.mark.parametrize("student", ["bilstm", "tinybert"])
def test_distilled_classifier_trains_persists_only_the_student_and_loads(tiny_bert_dir, storage, context, tmp_path, student):
    component = make_distilled(tiny_bert_dir, storage, context, student=student, workdir=str(tmp_path / "work"))
    component.train(training_data())
    with storage.read_from(Resource(NODE)) as folder:
        assert sorted(p.name for p in folder.iterdir()) == ["student"]
        assert json.loads((folder / "student" / "student.json").read_text())["kind"] == student
    assert (tmp_path / "work" / "run" / "teacher").is_dir()  # kept only because workdir was given
    assert not (tmp_path / "work" / "data").exists()  # the examples went on in memory, not through YAML
    texts = intent_pairs()[0]
    before = process(component, texts)
    loaded = DistilledIntentClassifier.load(component.component_config, storage, Resource(NODE), context)
    after = process(loaded, texts)
    assert [m.get("intent") for m in before] == [m.get("intent") for m in after]
    correct = sum(m.get("intent")["name"] == i for m, i in zip(before, intent_pairs()[1]))
    assert correct >= 0.7 * len(texts)


def test_distilled_classifier_holds_out_dev_and_cleans_up(tiny_bert_dir, storage, context, tmp_path, monkeypatch, caplog):
    import logging
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    component = make_distilled(tiny_bert_dir, storage, context, dev_fraction=0.2)
    train, dev = component._split(list(zip(*intent_pairs())))
    assert len(dev) == 7 and not set(dev) & set(train)
    with caplog.at_level(logging.INFO, logger="rasa_kd.components.distilled_intent_classifier"):
        component.train(training_data())
    assert not list(tmp_path.glob("rasa-kd-distill-*"))  # the temporary run is gone
    # The threshold picked on the held-out examples is logged and recorded with the student.
    with storage.read_from(Resource(NODE)) as folder:
        picked = json.loads((folder / "student" / "student.json").read_text())["fallback_threshold"]
    assert picked["messages"] == 7 and picked["split"] == "dev"
    assert f"FallbackClassifier threshold {picked['threshold']:.2f} keeps 95%" in caplog.text


@pytest.mark.parametrize("config, message", [
    ({"student": "cnn"}, "'student' must be one of 'bilstm', 'tinybert'; got 'cnn'"),
    ({"training": {"epochs": 0}}, "'training.epochs' must be an integer from 1 to 10000, got 0"),
    ({"bilstm": {"hiden_units": 3}}, "unknown setting\\(s\\) 'bilstm.hiden_units'"),
    ({"transfer_set": {"rules": {"mask_prob": 2}}}, "'transfer_set.rules.mask_prob' must be a number in \\[0.0, 1.0\\], got 2"),
    ({"teacher": 5}, "'teacher' must be a mapping of settings"),
    ({"dev_fraction": 0.9}, "'dev_fraction' must be a number in \\[0.0, 0.5\\), got 0.9"),
    ({"epochs": 3}, "unknown setting\\(s\\) 'epochs'"),
    ({"blas_threads": "all"}, "'blas_threads' must be"),
])
def test_distilled_config_errors_name_the_key_as_written(tiny_bert_dir, storage, context, config, message):
    with pytest.raises(InvalidConfigException, match=f"DistilledIntentClassifier \\({NODE}\\): .*{message}"):
        make_distilled(tiny_bert_dir, storage, context, **config)


def test_distilled_missing_teacher_model_fails_at_create(storage, context, tmp_path):
    with pytest.raises(InvalidConfigException, match="'teacher.model': model folder .*nowhere does not exist"):
        make_distilled(tmp_path / "nowhere", storage, context)
