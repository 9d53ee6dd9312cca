"""Real `rasa train nlu`, `rasa test nlu` and `rasa run --enable-api` with every rasa-kd component."""
import json
import shutil
import tarfile

import pytest
import yaml

from scripts.rasa_process import rasa_server, run_rasa
from tests.tiny_models import INTENT_EXAMPLES, TEST_EXAMPLES, write_nlu_file, write_tiny_bert

pytestmark = pytest.mark.e2e


def make_bot(folder, pipeline):
    write_nlu_file(folder / "data" / "nlu.yml")
    write_nlu_file(folder / "tests" / "test_nlu.yml", TEST_EXAMPLES)
    config = {"recipe": "default.v1", "language": "en", "assistant_id": "rasa-kd-e2e", "pipeline": pipeline}
    (folder / "config.yml").write_text(yaml.safe_dump(config))
    run_rasa(["train", "nlu", "--config", "config.yml", "--nlu", "data/nlu.yml", "--out", "models", "--fixed-model-name", "bot"], cwd=folder)
    return folder / "models" / "bot.tar.gz"


def rasa_test_nlu(bot):
    run_rasa(["test", "nlu", "--nlu", "tests/test_nlu.yml", "--model", "models/bot.tar.gz", "--out", "results"], cwd=bot)
    report = json.loads((bot / "results" / "intent_report.json").read_text())
    assert set(INTENT_EXAMPLES) <= set(report)
    return report


@pytest.fixture(scope="module")
def teacher_bot(tmp_path_factory):
    bot = tmp_path_factory.mktemp("teacher_bot")
    model_dir = write_tiny_bert(bot / "tiny_bert")
    archive = make_bot(bot, [
        # Rasa's own components beside the teacher must not disturb it.
        {"name": "WhitespaceTokenizer"},
        {"name": "rasa_kd.BertIntentClassifier", "model": str(model_dir), "epochs": 25,
         "batch_size": 8, "learning_rate": 0.002, "warmup_ratio": 0.0, "max_seq_length": 16, "ranking_length": 2,
         "train_embeddings": True},
    ])
    shutil.rmtree(model_dir)  # the archive must carry the teacher
    return bot, archive


@pytest.fixture(scope="module")
def student_bot(tmp_path_factory, bilstm_run):
    bot = tmp_path_factory.mktemp("student_bot")
    shutil.copytree(bilstm_run[0] / "student", bot / "students" / "bilstm")
    archive = make_bot(bot, [{"name": "rasa_kd.StudentIntentClassifier", "student_path": "students/bilstm"}])
    shutil.rmtree(bot / "students")  # the archive must carry the student
    return bot, archive


def test_the_teacher_archive_holds_weights_tokenizer_and_labels(teacher_bot):
    with tarfile.open(teacher_bot[1]) as tar:
        names = {n.rsplit("/", 1)[-1] for n in tar.getnames() if "/teacher/" in n}
    assert {"tf_model.h5", "config.json", "vocab.txt", "tokenizer.json", "rasa_kd.json"} <= names


def test_rasa_run_serves_the_teacher(teacher_bot):
    bot, archive = teacher_bot
    with rasa_server(archive, cwd=bot) as server:
        answers = {text: server.parse(text) for text in ["hello there friend", "i want to order a pizza", "goodbye bot"]}
        odd = [server.parse(text) for text in ["", "   ", "pizza " * 2000, "😀 \x00\x1b hi"]]
    for text, answer in answers.items():
        assert answer["text"] == text and answer["intent"]["name"] in INTENT_EXAMPLES
        assert len(answer["intent_ranking"]) == 2 and answer["intent_ranking"][0] == answer["intent"]
    assert answers["i want to order a pizza"]["intent"]["name"] == "order_pizza"
    assert answers["hello there friend"]["intent"]["name"] == "greet"
    assert odd[0]["intent"] == {"name": None, "confidence": 0.0} and odd[1]["intent_ranking"] == []
    assert odd[2]["intent"]["name"] == "order_pizza" and odd[3]["intent"]["name"] in INTENT_EXAMPLES


def test_rasa_run_serves_a_drop_in_student_after_its_folder_is_gone(student_bot):
    bot, archive = student_bot
    with rasa_server(archive, cwd=bot) as server:
        answers = [server.parse(text) for text in ["i want to order a pizza", "goodbye bot", "", "😀" * 50]]
    assert answers[0]["intent"]["name"] == "order_pizza"
    assert answers[1]["intent"]["name"] in INTENT_EXAMPLES and len(answers[1]["intent_ranking"]) == 3
    assert answers[2]["intent"] == {"name": None, "confidence": 0.0}
    assert answers[3]["intent"]["name"] in INTENT_EXAMPLES


def test_rasa_test_nlu_reports_on_teacher_and_student(teacher_bot, student_bot):
    for bot, _ in (teacher_bot, student_bot):
        report = rasa_test_nlu(bot)
        assert 0.5 <= report["accuracy"] <= 1.0


def test_distillation_inside_rasa_train_and_rasa_test_nlu(tmp_path, tiny_bert_dir):
    bot = tmp_path / "distilled_bot"
    make_bot(bot, [{"name": "rasa_kd.DistilledIntentClassifier", "student": "bilstm",
                    "teacher": {"model": str(tiny_bert_dir), "epochs": 25, "batch_size": 8, "learning_rate": 0.002,
                                "max_seq_length": 16, "train_embeddings": True},
                    "transfer_set": {"size": 300},
                    "bilstm": {"hidden_units": 16, "dense_units": 16, "max_seq_length": 16},
                    "training": {"epochs": 10, "batch_size": 16, "learning_rate": 0.005}}])
    with tarfile.open(bot / "models" / "bot.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("/student/student.json") for n in names)
    assert not any("/teacher/" in n for n in names)  # only the student is persisted
    assert rasa_test_nlu(bot)["accuracy"] >= 0.5


def test_a_bad_student_path_fails_rasa_train_with_a_message(tmp_path):
    from scripts.rasa_process import RasaProcessError

    with pytest.raises(RasaProcessError) as failure:
        make_bot(tmp_path, [{"name": "rasa_kd.StudentIntentClassifier", "student_path": "students/missing"}])
    output = str(failure.value)
    assert "student folder students/missing does not exist" in output
    assert "Traceback" not in output
