"""`rasa train nlu` with the teacher in a real pipeline, then `rasa run --enable-api` and /model/parse."""
import shutil
import tarfile

import pytest
import yaml

from rasa_kd.rasa_process import rasa_server, run_rasa
from tests.tiny_models import INTENT_EXAMPLES, write_nlu_file, write_tiny_bert

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def trained_bot(tmp_path_factory):
    bot = tmp_path_factory.mktemp("bot")
    model_dir = write_tiny_bert(bot / "tiny_bert")
    write_nlu_file(bot / "data" / "nlu.yml")
    config = {
        "recipe": "default.v1",
        "language": "en",
        "assistant_id": "rasa-kd-e2e",
        "pipeline": [
            # Rasa's own components beside the teacher must not disturb it.
            {"name": "WhitespaceTokenizer"},
            {"name": "rasa_kd.BertIntentClassifier", "model": str(model_dir), "epochs": 25,
             "batch_size": 8, "learning_rate": 0.002, "warmup_ratio": 0.0, "max_seq_length": 16, "ranking_length": 2},
        ],
    }
    (bot / "config.yml").write_text(yaml.safe_dump(config))
    run_rasa(["train", "nlu", "--config", "config.yml", "--nlu", "data/nlu.yml", "--out", "models", "--fixed-model-name", "bot"], cwd=bot)
    # The archive must carry the teacher: serve it with the base model folder gone.
    shutil.rmtree(model_dir)
    return bot, bot / "models" / "bot.tar.gz"


def test_the_archive_holds_weights_tokenizer_and_labels(trained_bot):
    _, archive = trained_bot
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    teacher_files = {n.rsplit("/", 1)[-1] for n in names if "/teacher/" in n}
    assert {"tf_model.h5", "config.json", "vocab.txt", "tokenizer.json", "rasa_kd.json"} <= teacher_files


def test_rasa_run_serves_the_teacher(trained_bot):
    bot, archive = trained_bot
    with rasa_server(archive, cwd=bot) as server:
        answers = {text: server.parse(text) for text in ["hello there friend", "i want to order a pizza", "goodbye bot"]}
        odd = [server.parse(text) for text in ["", "   ", "pizza " * 2000, "😀 \x00\x1b hi"]]
    for text, answer in answers.items():
        assert answer["text"] == text
        assert answer["intent"]["name"] in INTENT_EXAMPLES
        assert len(answer["intent_ranking"]) == 2
        assert answer["intent_ranking"][0] == answer["intent"]
    assert answers["i want to order a pizza"]["intent"]["name"] == "order_pizza"
    assert answers["hello there friend"]["intent"]["name"] == "greet"
    assert odd[0]["intent"] == {"name": None, "confidence": 0.0} and odd[1]["intent_ranking"] == []
    assert odd[2]["intent"]["name"] == "order_pizza"
    assert odd[3]["intent"]["name"] in INTENT_EXAMPLES
