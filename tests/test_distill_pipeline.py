"""The distillation stages on tiny models: teacher, transfer set, labelling, students, evaluation."""
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from rasa_kd import cli, openblas
from rasa_kd.distill import pipeline
from rasa_kd.distill.config import load_config
from rasa_kd.distill.labelling import label_transfer_set
from rasa_kd.distill.transfer_set import TransferSet, sentence_key
from rasa_kd.errors import ConfigError, DataError, ModelLoadError
from rasa_kd.models.student import StudentModel
from rasa_kd.models.teacher import Teacher
from tests.tiny_models import DEV_EXAMPLES, TEST_EXAMPLES, TINY_DISTILL as TINY, tiny_distill_config, vocabulary
from tests.tiny_models import intent_pairs as tiny_intent_pairs

REPO = Path(__file__).resolve().parents[1]

def tiny_config(data, bert_dir, **extra):
    return tiny_distill_config(data, bert_dir, **extra)


@pytest.fixture()
def data(tiny_data):
    return tiny_data


def dev_test_keys():
    return {sentence_key(t) for examples in (DEV_EXAMPLES, TEST_EXAMPLES) for e in examples.values() for t in e}


def test_distill_writes_every_output(bilstm_run):
    out, metrics = bilstm_run
    for name in ("config.yml", "teacher/rasa_kd.json", "transfer_set.jsonl", "transfer_set.json", "student/student.json",
                 "checkpoints/model-best/student.json", "checkpoints/model-last/student.json", "metrics.json", "report.md",
                 "plots/confusion_student.png", "plots/training.png", "plots/agreement.png", "stages.json", "student_training.json"):
        assert (out / name).exists(), name
    assert list((out / "checkpoints" / "tensorboard").glob("events.out.tfevents.*"))
    for model in ("teacher", "student"):
        block = metrics[model]
        assert block["params"] > 0 and block["size_bytes"] > 0
        assert set(block["scores"]) == {"dev", "test"}
        assert set(block["scores"]["test"]) == {"examples", "accuracy", "macro_f1", "micro_f1", "mcc"}
        assert block["latency_ms"]["batch_1"] > 0 and block["latency_ms"]["batch_256_per_example"] > 0
    assert metrics["transfer_set"]["size"] == 400
    assert metrics["student"]["confidence"]["auroc"] is None  # no out-of-scope file: calibration only
    assert metrics["teacher"]["confidence"]["threshold"] <= 1.0
    assert set(metrics["stages"]) == {"teacher", "augment", "label", "student", "evaluate"}
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["ratios"]["params"] == pytest.approx(metrics["teacher"]["params"] / metrics["student"]["params"])
    # The latencies above depend on NumPy's BLAS kernels: the record says which ran (NumPy's wheels bundle OpenBLAS).
    assert saved["openblas_kernels"] is not None and saved["openblas_kernels"] == openblas.kernels_in_use()
    report = (out / "report.md").read_text()
    assert "| student | test (9) |" in report and "![Training curves](plots/training.png)" in report
    assert "a perfectly calibrated model with the same confidences shows on 9 messages" in report
    resolved = yaml.safe_load((out / "config.yml").read_text())
    assert resolved["student"]["training"]["epochs"] == 12 and Path(resolved["data"]["train"]).is_absolute()


def test_the_fallback_threshold_is_picked_on_dev_and_recorded_with_the_student(bilstm_run):
    from rasa_kd.distill.confidence import threshold_keeping, top_intents
    from rasa_kd.distill.evaluate import _confidence_section

    out, metrics = bilstm_run
    record = json.loads((out / "student" / "student.json").read_text())
    picked = record["fallback_threshold"]
    dev_texts = [t for examples in DEV_EXAMPLES.values() for t in examples]
    assert picked["split"] == "dev" and picked["messages"] == len(dev_texts) and picked["keep"] == 0.95
    student = StudentModel.load(out / "student")
    # Calibrated to its teacher on dev and rule-made copies of it, before the threshold was picked.
    calibration = record["calibration"]
    assert calibration["fitted_on"] == "dev" and calibration["messages"] == len(dev_texts)
    assert calibration["sentences"] == len(dev_texts) * (1 + pipeline.CALIBRATION_COPIES)
    assert student.temperature == calibration["temperature"] != 1.0
    ids = student.encode(dev_texts)
    np.testing.assert_allclose(student.logits_of_ids(ids), student._network_logits(ids, 256) / student.temperature, rtol=1e-5)
    assert picked["threshold"] == pytest.approx(threshold_keeping(top_intents(student, dev_texts)[1], 0.95))
    # The evaluation applies the same threshold to test (not one picked on test itself).
    block = metrics["student"]["confidence"]
    assert block["dev_threshold"]["threshold"] == pytest.approx(picked["threshold"])
    test_texts = [t for examples in TEST_EXAMPLES.values() for t in examples]
    kept = (top_intents(student, test_texts)[1] >= picked["threshold"]).mean()
    assert block["dev_threshold"]["in_scope_kept"] == pytest.approx(kept)
    assert metrics["teacher"]["confidence"]["dev_threshold"]["split"] == "dev"
    assert "| student | " in (out / "report.md").read_text() and "| dev (9) |" in (out / "report.md").read_text()
    # Without a dev split nothing is passed off as held out.
    without = {k: v for k, v in block.items() if k != "dev_threshold"}
    text = "\n".join(_confidence_section({"confidence": without}, {"confidence": without}))
    assert "No dev split" in text and "The threshold to set" not in text


def test_the_student_learns_from_the_teacher(bilstm_run):
    out, metrics = bilstm_run
    history = json.loads((out / "student_training.json").read_text())
    losses = [epoch["loss"] for epoch in history["epochs"]]
    assert losses[-1] < 0.5 * losses[0]
    # Three intents: chance is 1/3.
    assert metrics["student"]["agreement_with_teacher"]["dev"] >= 0.75
    assert metrics["student"]["scores"]["test"]["accuracy"] >= 0.6


def test_no_dev_or_test_sentence_is_in_the_transfer_set(bilstm_run):
    out, _ = bilstm_run
    transfer = TransferSet.load(out / "transfer_set.jsonl")
    assert not {sentence_key(t) for t in transfer.texts} & dev_test_keys()


def test_the_student_round_trips_with_identical_predictions(bilstm_run, tmp_path):
    out, _ = bilstm_run
    student = StudentModel.load(out / "student")
    texts = ["hello friend", "i want a pizza with cheese", "bye bye", "unknownword 😀", ""]
    copy = student.save(tmp_path / "copy")
    np.testing.assert_array_equal(StudentModel.load(copy).logits(texts), student.logits(texts))
    record = json.loads((out / "student" / "student.json").read_text())
    assert record["labels"] == ["goodbye", "greet", "order_pizza"]
    assert record["teacher_fingerprint"] == Teacher.load(out / "teacher").fingerprint
    assert record["versions"]["tensorflow"].startswith("2.12") and record["kind"] == "bilstm"


def test_a_damaged_student_folder_names_the_file(bilstm_run, tmp_path):
    import shutil

    folder = tmp_path / "student"
    shutil.copytree(bilstm_run[0] / "student", folder)
    (folder / "weights.h5").write_bytes(b"broken")
    with pytest.raises(ModelLoadError, match="weights.h5 does not match its checksum"):
        StudentModel.load(folder)
    (folder / "student.json").unlink()
    with pytest.raises(ModelLoadError, match="has no student.json: it is not a rasa-kd student, or writing it did not finish"):
        StudentModel.load(folder)


def test_unchanged_stages_are_reused(bilstm_run, data, tiny_bert_dir, caplog):
    out, _ = bilstm_run
    before = json.loads((out / "stages.json").read_text())
    caplog.set_level("INFO")
    pipeline.run_stage("teacher", tiny_config(data, tiny_bert_dir), out, progress=False)
    pipeline.run_stage("augment", tiny_config(data, tiny_bert_dir), out, progress=False)
    assert "teacher: reusing" in caplog.text and "augment: reusing" in caplog.text
    after = json.loads((out / "stages.json").read_text())
    assert after["teacher"] == before["teacher"] and after["augment"] == before["augment"]


@pytest.mark.parametrize("extra", [
    {"student.training.loss": "kl", "student.training.temperature": 3.0, "student.training.alpha": 0.5},
    {"student.tinybert.init": "random", "student.training.hidden_loss_weight": 1.0, "student.training.attention_loss_weight": 1.0},
])
def test_tinybert_students_learn_with_each_loss(tmp_path, data, tiny_bert_dir, bilstm_run, extra):
    out = tmp_path / "tinybert"
    config = tiny_config(data, tiny_bert_dir, **{"student.type": "tinybert", "teacher.path": str(bilstm_run[0] / "teacher"), **extra})
    metrics = pipeline.distill(config, out, progress=False)
    history = json.loads((out / "student_training.json").read_text())
    assert history["epochs"][-1]["loss"] < history["epochs"][0]["loss"]
    assert metrics["student"]["agreement_with_teacher"]["dev"] >= 0.6
    assert json.loads((out / "student" / "student.json").read_text())["kind"] == "tinybert"
    student = StudentModel.load(out / "student")
    np.testing.assert_allclose(StudentModel.load(out / "student").logits(["hi bot"]), student.logits(["hi bot"]))


def test_tinybert_copies_teacher_layers(tmp_path, data, tiny_bert_dir, bilstm_run):
    from rasa_kd.models.networks import build_tinybert
    from rasa_kd.models.student import StudentVocab
    from rasa_kd.models import bert

    teacher = Teacher.load(bilstm_run[0] / "teacher")
    config = tiny_config(data, tiny_bert_dir, **{"student.tinybert.init": "teacher", "student.tinybert.layers": 1,
                                                  "student.tinybert.hidden_size": 32, "student.tinybert.intermediate_size": 64,
                                                  "student.tinybert.teacher_layers": [1]})
    ids = bert.encode(teacher.tokenizer, ["hello friend", "order a pizza"], 16)
    vocab = StudentVocab.from_teacher_ids(ids, teacher.tokenizer)
    student = build_tinybert(config.student.tinybert, vocab, teacher.labels, teacher)
    for got, want in zip(student.bert.encoder.layer[0].get_weights(), teacher.model.bert.encoder.layer[1].get_weights()):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(student.bert.embeddings.weight.numpy(), teacher.model.bert.embeddings.weight.numpy()[vocab.teacher_ids])
    too_small = tiny_config(data, tiny_bert_dir, **{"student.tinybert.init": "teacher"})
    with pytest.raises(ConfigError, match="'student.tinybert.hidden_size' must be the teacher's 32, got 16"):
        build_tinybert(too_small.student.tinybert, vocab, teacher.labels, teacher)


def test_a_teacher_inside_a_rasa_model_archive_is_reused(tmp_path, data, tiny_bert_dir, bilstm_run):
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(bilstm_run[0] / "teacher", arcname="components/train_rasa_kd.BertIntentClassifier0/teacher")
    out = tmp_path / "reuse"
    config = tiny_config(data, tiny_bert_dir, **{"teacher.path": str(archive)})
    teacher = pipeline.run_stage("teacher", config, out, progress=False)
    assert teacher.fingerprint == Teacher.load(bilstm_run[0] / "teacher").fingerprint
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as tar:
        tar.add(data["train"], arcname="components/x/train.yml")
    with pytest.raises(ModelLoadError, match="contains no rasa_kd.BertIntentClassifier teacher"):
        pipeline.run_stage("teacher", tiny_config(data, tiny_bert_dir, **{"teacher.path": str(empty)}), tmp_path / "o2", progress=False)


def test_missing_data_settings_are_named(tmp_path, tiny_bert_dir):
    config = load_config(None, {"teacher.model": str(tiny_bert_dir)})
    with pytest.raises(ConfigError, match="'data.train' is not set: pass --train FILE"):
        pipeline.run_stage("teacher", config, tmp_path / "out", progress=False)


# --- labelling: cache, resume after a kill -------------------------------------------------------


def write_big_transfer_set(out: Path, count: int) -> TransferSet:
    words = [w for w in vocabulary() if w.isalpha()]
    rng = np.random.default_rng(0)
    texts = sorted({" ".join(rng.choice(words, size=rng.integers(3, 9))) for _ in range(count * 2)})[:count]
    transfer = TransferSet(texts, ["rules"] * len(texts), [None] * len(texts))
    transfer.save(out / "transfer_set.jsonl")
    return transfer


def test_labelling_resumes_after_the_process_is_killed(tmp_path, data, bilstm_run):
    out = tmp_path / "run"
    out.mkdir()
    import shutil

    shutil.copytree(bilstm_run[0] / "teacher", out / "teacher")
    transfer = write_big_transfer_set(out, 30000)
    shard_size = 100
    config = {"data": {"train": str(data["train"]), "dev": str(data["dev"])},
              "labelling": {"shard_size": shard_size, "batch_size": 100}}
    (out / "config.yml").write_text(yaml.safe_dump(config))
    total = -(-len(transfer) // shard_size)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen([sys.executable, "-m", "rasa_kd.cli", "label", "--output", str(out), "--no-progress"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cache = out / "cache"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if len(list(cache.glob("logits-*/shard-*.npy"))) >= 5:
                break
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)
    done_at_kill = len(list(cache.glob("logits-*/shard-*.npy")))
    assert 5 <= done_at_kill < total, f"the kill did not land mid-run ({done_at_kill} of {total} shards)"

    teacher = Teacher.load(out / "teacher")
    resumed = label_transfer_set(teacher, transfer.texts, cache, batch_size=100, shard_size=shard_size, progress=False)
    assert resumed.reused_shards == done_at_kill and resumed.shards == total
    assert not list(cache.glob("logits-*/.shard-*.tmp"))
    fresh = label_transfer_set(teacher, transfer.texts, tmp_path / "fresh", batch_size=100, shard_size=shard_size, progress=False)
    assert fresh.reused_shards == 0
    np.testing.assert_allclose(resumed.logits, fresh.logits, atol=1e-5)
    again = label_transfer_set(teacher, transfer.texts, cache, batch_size=100, shard_size=shard_size, progress=False)
    assert again.reused_shards == total
    np.testing.assert_array_equal(again.logits, resumed.logits)


def test_a_different_teacher_or_transfer_set_gets_its_own_cache(bilstm_run, tmp_path):
    teacher = Teacher.load(bilstm_run[0] / "teacher")
    first = label_transfer_set(teacher, ["hello", "bye"], tmp_path, shard_size=1, progress=False)
    second = label_transfer_set(teacher, ["hello", "bye bye"], tmp_path, shard_size=1, progress=False)
    assert first.cache_dir != second.cache_dir and second.reused_shards == 0


def test_with_label_unmasked_a_masked_sentence_gets_the_teachers_logits_on_its_words(tmp_path, data, tiny_bert_dir, bilstm_run):
    config = tiny_config(data, tiny_bert_dir, **{"teacher.path": str(bilstm_run[0] / "teacher"),
                                                "transfer_set.rules.label_unmasked": True})
    run = pipeline.Distillation(config, tmp_path / "out", progress=False)
    run.run_stage("teacher")  # the fixture's teacher, copied
    transfer, logits = run.run_stage("augment"), run.run_stage("label").logits
    masked = [i for i, text in enumerate(transfer.texts) if "[MASK]" in text]
    assert masked and all(transfer.teacher_texts[i] for i in masked)
    teacher = Teacher.load(bilstm_run[0] / "teacher")
    shown = teacher.logits([transfer.teacher_texts[i] for i in masked])
    np.testing.assert_allclose(logits[masked], shown, atol=1e-4)
    assert np.abs(teacher.logits([transfer.texts[i] for i in masked]) - shown).max() > 1e-3  # what the default would label
    kept = [i for i in range(len(transfer)) if i not in set(masked)][:50]
    np.testing.assert_allclose(logits[kept], teacher.logits([transfer.texts[i] for i in kept]), atol=1e-4)
    # The student's temperature is fitted against the teacher reading its calibration copies the same way.
    copies = run.calibration_sentences(teacher)[2]
    masked_copies = [(text, shown) for text, shown in copies if "[MASK]" in text]
    assert masked_copies and all("[MASK]" not in shown and len(shown.split()) == len(text.split()) for text, shown in masked_copies)
    default = pipeline.Distillation(tiny_config(data, tiny_bert_dir), tmp_path / "default", progress=False)
    assert [text for text, _ in default.calibration_sentences(teacher)[2]] == [text for text, _ in copies]
    assert all(text == shown for text, shown in default.calibration_sentences(teacher)[2])


# --- the command line ----------------------------------------------------------------------------


def test_cli_runs_stage_by_stage_with_flags_over_the_config_file(tmp_path, data, tiny_bert_dir, bilstm_run, capsys):
    config_file = tmp_path / "tiny.yml"
    values = {}
    for dotted, value in TINY.items():
        node = values
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    config_file.write_text(yaml.safe_dump(values))
    out = tmp_path / "out"
    common = ["--output", str(out), "--no-progress"]
    assert cli.main(["teacher", "--config", str(config_file), "--teacher", str(bilstm_run[0] / "teacher"),
                     "--train", str(data["train"]), "--dev", str(data["dev"]), "--test", str(data["test"]), *common]) == 0
    assert cli.main(["augment", *common, "--set", "transfer_set.size=150"]) == 0
    assert cli.main(["label", *common]) == 0
    assert cli.main(["student", *common, "--student", "bilstm", "--set", "student.training.epochs=3"]) == 0
    out_of_scope = tmp_path / "oos.txt"
    out_of_scope.write_text("what is the capital of france\nasdkjh qwe zzz\n")
    assert cli.main(["evaluate", *common, "--out-of-scope", str(out_of_scope)]) == 0
    printed = capsys.readouterr().out
    assert "student  test" in printed and "x faster at batch 1" in printed
    assert "student confidence on test: ECE" in printed and "out of scope: AUROC" in printed
    assert "student fallback threshold picked on dev:" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    for model in ("teacher", "student"):
        block = metrics[model]["confidence"]
        assert block["split"] == "test" and block["in_scope_examples"] == 9 and block["out_of_scope_examples"] == 2
        assert 0.0 <= block["auroc"] <= 1.0 and 0.0 <= block["ece"] <= 1.0 and block["in_scope_kept"] >= 0.95
    report = (out / "report.md").read_text()
    assert "## Confidence: can a fallback threshold trust it?" in report and "plots/reliability.png" in report
    assert (out / "plots" / "reliability.png").is_file() and (out / "plots" / "confidence.png").is_file()
    resolved = yaml.safe_load((out / "config.yml").read_text())
    assert resolved["transfer_set"]["size"] == 150 and resolved["student"]["training"]["epochs"] == 3
    assert len(TransferSet.load(out / "transfer_set.jsonl")) == 150
    assert cli.main(["student", "--output", str(tmp_path / "empty"), "--no-progress"]) == 2
    assert "no teacher in" in capsys.readouterr().err


# --- stages in memory ----------------------------------------------------------------------------


def test_one_run_reads_the_data_once_and_hands_the_teacher_on_in_memory(tmp_path, data, tiny_bert_dir, bilstm_run, monkeypatch):
    from rasa_kd.data import nlu_yaml

    calls = {"data": 0, "teacher": 0}
    read, load = nlu_yaml.load_intent_examples, Teacher.load.__func__

    def counted_read(*args, **kwargs):
        calls["data"] += 1
        return read(*args, **kwargs)

    def counted_load(cls, *args, **kwargs):
        calls["teacher"] += 1
        return load(cls, *args, **kwargs)

    monkeypatch.setattr(nlu_yaml, "load_intent_examples", counted_read)
    monkeypatch.setattr(Teacher, "load", classmethod(counted_load))
    config = tiny_config(data, tiny_bert_dir, **{"teacher.path": str(bilstm_run[0] / "teacher"), "student.training.epochs": 2,
                                                 "transfer_set.size": 100})
    metrics = pipeline.distill(config, tmp_path / "run", progress=False)
    assert calls == {"data": 3, "teacher": 1}  # train, dev and test files once each; the copied teacher once
    assert metrics["student"]["scores"]["test"]["examples"] == 9


def test_distil_examples_takes_texts_and_intents_and_gives_a_student(tmp_path, tiny_bert_dir):
    from tests.tiny_models import intent_pairs

    texts, intents = intent_pairs()
    config = load_config(None, {**{k: v for k, v in TINY.items() if not k.startswith("evaluation")},
                                "teacher.model": str(tiny_bert_dir), "student.training.epochs": 3, "transfer_set.size": 100})
    student = pipeline.distil_examples(texts, intents, config, progress=False)
    assert student.labels == ["goodbye", "greet", "order_pizza"] and student.runtime == "numpy"
    assert student.logits(["hello friend"]).shape == (1, 3)
    kept = pipeline.distil_examples(texts, intents, config, output=tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "student" / "student.json").is_file() and not (tmp_path / "run" / "metrics.json").exists()
    np.testing.assert_allclose(kept.logits(texts), student.logits(texts), atol=1e-5)  # same seed, same student


def test_a_small_bots_student_gets_its_epochs_from_the_data_size(tmp_path, data, tiny_bert_dir, bilstm_run, monkeypatch):
    """Epochs left null: the run resolves them (tiny data: 200,000 / 150 sentences, capped at 30) and records the choice."""
    config = tiny_config(data, tiny_bert_dir, **{"teacher.path": str(bilstm_run[0] / "teacher"), "transfer_set.size": 150,
                                                 "student.training.epochs": None, "student.training.batch_size": 64})
    assert config.student.training.epochs is None
    pipeline.distill(config, tmp_path / "run", progress=False)
    record = json.loads((tmp_path / "run" / "student" / "student.json").read_text())
    assert record["training_settings"]["epochs"] == 30
    assert len(json.loads((tmp_path / "run" / "student_training.json").read_text())["epochs"]) <= 30
    # Another rasa-kd whose rule resolves other epochs must train again, not reuse the folder's student.
    from rasa_kd.distill import config as config_module

    monkeypatch.setattr(config_module, "SMALL_DATA_STUDENT_SENTENCES", 3000)  # 3,000 / 150: 20 epochs
    pipeline.distill(config, tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / "student" / "student.json").read_text())["training_settings"]["epochs"] == 20


def test_an_out_of_scope_intent_and_file_train_the_low_confidence_and_are_scored_as_out_of_scope(tmp_path, tiny_bert_dir):
    from tests.tiny_models import INTENT_EXAMPLES, write_nlu_file

    out_of_scope = {"train": ["what is the weather", "tell me a joke", "who won the game", "play some music"],
                    "dev": ["how old is the moon"], "test": ["what time is it", "sing a song"]}
    examples = {"train": INTENT_EXAMPLES, "dev": DEV_EXAMPLES, "test": TEST_EXAMPLES}
    files = {split: write_nlu_file(tmp_path / f"{split}.yml", {**examples[split], "out_of_scope": out_of_scope[split]})
             for split in examples}
    (tmp_path / "more.txt").write_text("book a flight\nwhat is love\n", encoding="utf-8")
    config = tiny_config(files, tiny_bert_dir, **{"teacher.out_of_scope_intent": "out_of_scope",
                                                  "teacher.out_of_scope_file": str(tmp_path / "more.txt")})
    metrics = pipeline.distill(config, tmp_path / "run", progress=False)
    teacher = Teacher.load(tmp_path / "run" / "teacher")
    assert teacher.labels == ["goodbye", "greet", "order_pizza"]  # not an intent it answers
    training = teacher.record["training"]
    assert training["given_outliers"] == 4 + 2 and training["examples"] == 36
    assert training["synthetic_outliers"] == 18  # 0.5 per in-scope example
    transfer = TransferSet.load(tmp_path / "run" / "transfer_set.jsonl")
    outliers = [t for t, s in zip(transfer.texts, transfer.sources) if s == "outliers"]
    assert outliers[:2] == ["book a flight", "what is love"] and len(outliers) == 2 + 40  # the file, then 10% of 400
    assert StudentModel.load(tmp_path / "run" / "student").labels == teacher.labels
    # In-scope scores leave the intent's dev and test examples out; they are scored as out of scope instead.
    assert metrics["student"]["scores"]["test"]["examples"] == 9
    assert metrics["student"]["confidence"]["out_of_scope_examples"] == 2
    assert json.loads((tmp_path / "run" / "student" / "student.json").read_text())["fallback_threshold"]["messages"] == 9


def test_an_out_of_scope_intent_no_example_has_is_named(tmp_path, data, tiny_bert_dir):
    config = tiny_config(data, tiny_bert_dir, **{"teacher.out_of_scope_intent": "oos"})
    with pytest.raises(DataError, match="'out_of_scope_intent' is 'oos' but no training example has that intent"):
        pipeline.distill(config, tmp_path / "run", progress=False)


def test_the_students_calibration_can_be_turned_off(tmp_path, data, tiny_bert_dir, bilstm_run):
    config = tiny_config(data, tiny_bert_dir, **{"teacher.path": str(bilstm_run[0] / "teacher"), "student.training.epochs": 1,
                                                 "student.training.calibrate": False})
    pipeline.distill(config, tmp_path / "run", progress=False)
    assert "calibration" not in json.loads((tmp_path / "run" / "student" / "student.json").read_text())
    assert StudentModel.load(tmp_path / "run" / "student").temperature == 1.0


def test_the_threshold_keeps_every_kept_back_example_but_95_percent_of_dev(tmp_path, data, tiny_bert_dir, monkeypatch):
    class FixedScores:  # top confidence sigmoid(x) for the sentence "x"
        labels = ["a", "b"]

        def logits(self, texts):
            return np.array([[float(t), 0.0] for t in texts])

    texts = [str(x / 10) for x in range(1, 41)]
    run = pipeline.Distillation(tiny_config(data, tiny_bert_dir), tmp_path / "run", progress=False)
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    monkeypatch.setattr(run, "_student_held_out", lambda: (pipeline.HOLDOUT_SPLIT, texts))
    picked = run._student_threshold(FixedScores())
    assert picked == {"threshold": pytest.approx(sigmoid(0.1)), "keep": 1.0, "split": pipeline.HOLDOUT_SPLIT, "messages": 40}
    monkeypatch.setattr(run, "_student_held_out", lambda: ("dev", texts))
    picked = run._student_threshold(FixedScores())  # two of 40 may fall below it
    assert picked["keep"] == 0.95 and picked["threshold"] == pytest.approx(sigmoid(0.3))


def test_without_dev_the_students_threshold_is_picked_on_examples_kept_out_of_its_transfer_set(tmp_path, data, tiny_bert_dir, bilstm_run):
    from rasa_kd.distill.confidence import top_intents

    config = tiny_config(data, tiny_bert_dir, **{"teacher.path": str(bilstm_run[0] / "teacher"), "data.dev": None,
                                                 "student.training.epochs": 3})
    metrics = pipeline.distill(config, tmp_path / "run", progress=False)
    picked = json.loads((tmp_path / "run" / "student" / "student.json").read_text())["fallback_threshold"]
    assert picked["split"] == pipeline.HOLDOUT_SPLIT and picked["messages"] == 3  # one of each intent's 12
    stats = json.loads((tmp_path / "run" / "transfer_set.json").read_text())
    assert stats["kept_back_for_threshold"] == 3 and stats["by_source"]["train"] == 33
    transfer_keys = {sentence_key(t) for t in TransferSet.load(tmp_path / "run" / "transfer_set.jsonl").texts}
    texts, intents = tiny_intent_pairs()
    kept_back = [texts[i] for i in pipeline.threshold_holdout(texts, intents, 0.1, config.transfer_set.random_seed)]
    assert not transfer_keys & {sentence_key(t) for t in kept_back}  # neither they nor their augmentations
    student = StudentModel.load(tmp_path / "run" / "student")
    assert picked["keep"] == 1.0 and picked["threshold"] == pytest.approx(min(top_intents(student, kept_back)[1]))
    calibration = json.loads((tmp_path / "run" / "student" / "student.json").read_text())["calibration"]
    assert calibration["fitted_on"] == pipeline.HOLDOUT_SPLIT and calibration["sentences"] == 3 * (1 + pipeline.CALIBRATION_COPIES)
    # Applied to test in the evaluation; the teacher, which trained on them, gets none.
    assert metrics["student"]["confidence"]["dev_threshold"]["split"] == pipeline.HOLDOUT_SPLIT
    assert "dev_threshold" not in metrics["teacher"]["confidence"]
    assert "kept out of the transfer set (3)" in (tmp_path / "run" / "report.md").read_text()


def test_reading_a_run_leaves_its_config_as_the_run_wrote_it(bilstm_run, data, tiny_bert_dir):
    out = bilstm_run[0]
    written = (out / "config.yml").read_bytes()
    # Another config (other epochs) on the same folder, only read from: its splits and a calibration.
    other = tiny_config(data, tiny_bert_dir, **{"student.training.epochs": 3})
    run = pipeline.Distillation(other, out, progress=False)
    assert run.splits["train"][0]
    run.calibrate_student(StudentModel.load(out / "student"), Teacher.load(out / "teacher"))
    assert (out / "config.yml").read_bytes() == written


def test_label_smoothing_retrains_the_teacher_and_off_keeps_earlier_runs_fingerprints(data, tiny_bert_dir, tmp_path, monkeypatch):
    hashed = []
    monkeypatch.setattr(pipeline, "fingerprint", lambda parts: hashed.append(parts) or str(len(hashed)))
    for smoothing in (0.0, 0.1):
        config = tiny_config(data, tiny_bert_dir, **{"teacher.label_smoothing": smoothing})
        pipeline.Distillation(config, tmp_path / str(smoothing), progress=False)._teacher_inputs()
    off, on = (parts[1] for parts in hashed)
    assert "label_smoothing" not in off and on["label_smoothing"] == 0.1  # off: hashed as before the setting existed
    assert {k: v for k, v in on.items() if k != "label_smoothing"} == off
