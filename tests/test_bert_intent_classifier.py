import json

import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from rasa_kd.components.bert_intent_classifier import BertIntentClassifier
from rasa_kd.components.common import RasaKDComponentError
from tests.tiny_models import intent_pairs

NODE = "train_BertIntentClassifier0"
TRAINING = {"epochs": 25, "batch_size": 8, "learning_rate": 2e-3, "warmup_ratio": 0.0, "max_seq_length": 16,
            "train_embeddings": True}
ODD_TEXTS = ["", "   \n\t ", "hello " * 1700, "😀🎉 pizza 🍕", "\x00\x01\x1b[31m hi \u200b\u2028 bye", "\x00\x07"]


@pytest.fixture()
def model_storage(tmp_path):
    return LocalModelStorage.create(tmp_path)


@pytest.fixture()
def context():
    return ExecutionContext(GraphSchema({}), "model-id", node_name=NODE)


def make(tiny_bert_dir, model_storage, context, **config):
    resource = Resource(NODE)
    return BertIntentClassifier.create(
        {**BertIntentClassifier.get_default_config(), "model": str(tiny_bert_dir), **config},
        model_storage,
        resource,
        context,
    )


def training_data():
    texts, intents = intent_pairs()
    return TrainingData([Message.build(text=t, intent=i) for t, i in zip(texts, intents)])


def messages(texts):
    return [Message.build(text=t) for t in texts]


@pytest.fixture()
def trained(tiny_bert_dir, model_storage, context):
    component = make(tiny_bert_dir, model_storage, context, **TRAINING)
    component.train(training_data())
    return component


def test_train_persist_load_predicts_exactly_the_same(trained, model_storage, context):
    texts = intent_pairs()[0] + ["what is this", "i like cheese pizza"]
    before = trained.process(messages(texts))
    loaded = BertIntentClassifier.load(trained.component_config, model_storage, Resource(NODE), context)
    after = loaded.process(messages(texts))
    for b, a in zip(before, after):
        assert b.get("intent") == a.get("intent")
        assert b.get("intent_ranking") == a.get("intent_ranking")
    correct = sum(m.get("intent")["name"] == i for m, i in zip(before, intent_pairs()[1]))
    assert correct >= 0.9 * len(intent_pairs()[1])


@pytest.mark.parametrize("ranking_length, expected", [(10, 3), (2, 2), (0, 3)])
def test_ranking_contract(tiny_bert_dir, model_storage, context, ranking_length, expected):
    component = make(tiny_bert_dir, model_storage, context, **{**TRAINING, "epochs": 3}, ranking_length=ranking_length)
    component.train(training_data())
    [message] = component.process(messages(["hello there"]))
    intent, ranking = message.get("intent"), message.get("intent_ranking")
    assert set(intent) == {"name", "confidence"} and type(intent["confidence"]) is float
    assert len(ranking) == expected
    assert [r["confidence"] for r in ranking] == sorted((r["confidence"] for r in ranking), reverse=True)
    assert ranking[0] == intent
    assert all(type(r["confidence"]) is float and 0.0 <= r["confidence"] <= 1.0 for r in ranking)
    if ranking_length == 0:
        assert sum(r["confidence"] for r in ranking) == pytest.approx(1.0, abs=1e-5)
    json.dumps(message.as_dict(only_output_properties=True))  # plain Python values only


def test_odd_texts_get_valid_answers(trained):
    answers = trained.process(messages(ODD_TEXTS))
    for text, message in zip(ODD_TEXTS, answers):
        intent = message.get("intent")
        if text.strip() and text != "\x00\x07":
            assert intent["name"] in {"greet", "goodbye", "order_pizza"}
            assert 0.0 < intent["confidence"] <= 1.0
        else:  # nothing to classify: DIET's answer for an empty message
            assert intent == {"name": None, "confidence": 0.0} and message.get("intent_ranking") == []
        json.dumps(message.as_dict(only_output_properties=True))


@pytest.mark.parametrize(
    "config, message",
    [
        ({"epochs": -1}, "'epochs' must be an integer from 1 to 1000, got -1"),
        ({"learning_rate": "fast"}, "'learning_rate' must be a number in \\(0.0, 1.0\\], got 'fast'"),
        ({"ranking_length": -2}, "'ranking_length' must be an integer >= 0, got -2"),
        ({"batch_sise": 8}, "unknown setting\\(s\\) 'batch_sise'"),
    ],
)
def test_bad_config_fails_at_create_naming_the_key(tiny_bert_dir, model_storage, context, config, message):
    with pytest.raises(InvalidConfigException, match=f"BertIntentClassifier \\({context.node_name}\\): {message}"):
        make(tiny_bert_dir, model_storage, context, **config)


def test_a_model_folder_that_does_not_exist_fails_at_create(model_storage, context, tmp_path):
    with pytest.raises(InvalidConfigException, match="'model': model folder .*nowhere does not exist"):
        make(tmp_path / "nowhere", model_storage, context)


def test_rasa_added_finetuning_key_is_accepted(tiny_bert_dir, model_storage, context):
    make(tiny_bert_dir, model_storage, context, finetuning_epoch_fraction=0.5)


def test_a_damaged_teacher_fails_to_load_naming_the_file(trained, model_storage, context):
    with model_storage.read_from(Resource(NODE)) as folder:
        (folder / "teacher" / "config.json").write_text("{}")
    with pytest.raises(RasaKDComponentError, match="config.json does not match its checksum"):
        BertIntentClassifier.load(trained.component_config, model_storage, Resource(NODE), context)


def test_no_intent_examples_skips_training_and_loads_without_intents(tiny_bert_dir, model_storage, context, caplog):
    component = make(tiny_bert_dir, model_storage, context)
    component.train(TrainingData([Message.build(text="hello")]))
    loaded = BertIntentClassifier.load(component.component_config, model_storage, Resource(NODE), context)
    assert "holds no trained teacher" in caplog.text
    [message] = loaded.process(messages(["hello"]))
    assert message.get("intent") == {"name": None, "confidence": 0.0}


def test_the_component_is_importable_by_its_short_rasa_name():
    import rasa_kd
    from rasa.engine.recipes.default_recipe import DefaultV1Recipe

    assert rasa_kd.BertIntentClassifier is BertIntentClassifier
    assert DefaultV1Recipe._from_registry("rasa_kd.BertIntentClassifier").clazz is BertIntentClassifier
