"""Transfer sets streamed from disk: the file read on demand, labelling that keeps no logits, the shard
stream's batch order (every sentence once an epoch, resumable mid-epoch), and a whole streamed run."""
import json
from pathlib import Path

import numpy as np
import pytest

from rasa_kd.distill import pipeline
from rasa_kd.distill.labelling import _save_shard, _shard_path, label_transfer_set
from rasa_kd.distill.streaming import ShardStream, TokenShards, TransferSetFile, _save_tokens
from rasa_kd.errors import DataError
from rasa_kd.models.student import StudentModel
from tests.tiny_models import tiny_distill_config


def _write_transfer(path: Path, count: int) -> list:
    texts = [f"sentence number {i} " + "word " * (i % 7) for i in range(count)]
    with open(path, "w", encoding="utf-8") as out:
        for i, text in enumerate(texts):
            out.write(json.dumps({"text": text, "source": "rules", "intent": "greet" if i % 3 == 0 else None}) + "\n")
    return texts


def test_transfer_file_reads_any_slice_from_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(TransferSetFile, "STRIDE", 8)  # several index blocks in a small file
    texts = _write_transfer(tmp_path / "transfer_set.jsonl", 50)
    file = TransferSetFile(tmp_path / "transfer_set.jsonl")
    assert len(file) == 50
    assert list(file) == texts
    assert file[13:37] == texts[13:37] and file[45:] == texts[45:] and file[-1] == texts[-1] and file[0] == texts[0]
    assert file.rows(7, 10) == [(texts[7], None), (texts[8], None), (texts[9], "greet")]


def test_transfer_file_names_the_bad_line(tmp_path):
    path = tmp_path / "transfer_set.jsonl"
    _write_transfer(path, 5)
    with open(path, "a", encoding="utf-8") as out:
        out.write('{"source": "rules"}\n')
    with pytest.raises(DataError, match=r"transfer_set.jsonl, line 6"):
        list(TransferSetFile(path))


class _Teacher:
    """Logits from the sentence's number: enough to check what is cached where."""

    fingerprint, max_seq_length, labels = "fake", 16, ["a", "b", "c"]

    def logits(self, texts, batch_size):
        numbers = np.array([float(t.split()[2]) for t in texts], dtype=np.float32)
        return np.stack([numbers, -numbers, numbers % 3], axis=1)


def test_streamed_labelling_keeps_no_logits_and_writes_the_same_cache(tmp_path):
    texts = _write_transfer(tmp_path / "transfer_set.jsonl", 70)
    in_memory = label_transfer_set(_Teacher(), texts, tmp_path / "a", shard_size=16, progress=False)
    streamed = label_transfer_set(_Teacher(), TransferSetFile(tmp_path / "transfer_set.jsonl"), tmp_path / "b",
                                  shard_size=16, progress=False, keep_logits=False)
    assert streamed.logits is None and streamed.shards == 5 and streamed.computed_shards == 5
    assert in_memory.cache_dir.name == streamed.cache_dir.name  # the same key: the file's texts are the list's
    on_disk = np.concatenate([np.load(_shard_path(streamed.cache_dir, i)) for i in range(5)])
    np.testing.assert_array_equal(on_disk, in_memory.logits)


def _stream(tmp_path: Path, sizes, batch_size: int) -> ShardStream:
    """Shards whose gold column holds each sentence's global number, so a batch says which it holds."""
    folder, logits_folder = tmp_path / "tokens", tmp_path / "logits"
    folder.mkdir(), logits_folder.mkdir()
    shards, start, rng = TokenShards(folder, list(sizes), np.zeros(10, dtype=bool)), 0, np.random.default_rng(0)
    for index, size in enumerate(sizes):
        id_lists = [list(rng.integers(1, 10, size=int(rng.integers(1, 9)))) for _ in range(size)]
        _save_tokens(shards.path(index), id_lists, np.arange(start, start + size))
        _save_shard(_shard_path(logits_folder, index), np.full((size, 2), index, dtype=np.float32))
        start += size
    return ShardStream(shards, logits_folder, 2, batch_size)


def _epoch(stream: ShardStream, seed: int, skip: int = 0):
    """The epoch's batches as global sentence numbers (and the shard each came from)."""
    rng = np.random.default_rng(seed)
    out = []
    for batch in stream.epoch(rng, skip):
        ids, offsets, logits, gold = stream.current
        assert len(set(logits[batch, 0])) == 1  # a batch never mixes shards
        out.append(gold[batch].tolist())
    return out, rng.bit_generator.state


def test_stream_visits_every_sentence_once_an_epoch(tmp_path):
    stream = _stream(tmp_path, [20, 20, 7], batch_size=6)
    assert stream.examples == 47 and stream.steps_per_epoch() == 4 + 4 + 2
    batches, _ = _epoch(stream, seed=1)
    assert len(batches) == stream.steps_per_epoch()
    assert sorted(n for batch in batches for n in batch) == list(range(47))
    other, _ = _epoch(stream, seed=2)
    assert other != batches  # the seed draws the order: shards and batches within them


def test_stream_resumes_mid_epoch_without_the_batches_done(tmp_path):
    stream = _stream(tmp_path, [20, 20, 7], batch_size=6)
    whole, state_after = _epoch(stream, seed=5)
    for skip in (1, 4, 5, 9):
        tail, state = _epoch(stream, seed=5, skip=skip)
        assert tail == whole[skip:]
        assert state == state_after  # the next epoch starts from the same generator state


def test_streamed_run_never_loads_the_transfer_set(tmp_path, tiny_data, tiny_bert_dir, bilstm_run):
    """A run with ``compute.stream_from: 0``: labelling keeps no logits, the student trains from shards, and
    no stage after augment holds the transfer set in memory."""
    out = tmp_path / "run"
    config = tiny_distill_config(tiny_data, tiny_bert_dir, **{"compute.stream_from": 0, "student.training.epochs": 4,
                                                                 "teacher.path": str(bilstm_run[0] / "teacher")})
    pipeline.Distillation(config, out, progress=False).run_stages(["teacher", "augment"])
    run = pipeline.Distillation(config, out, progress=False)
    assert run.streamed
    student = run.student()
    assert run._transfer is None and run.labelling().logits is None
    rows = [json.loads(line) for line in (out / "transfer_set.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {row["source"] for row in rows[:40]} != {"train"}  # written shuffled: shards are samples of the whole set
    assert json.loads((out / "labelling.json").read_text())["streamed"] is True
    # The vocabulary is the one the in-memory path builds from the same sentences.
    from rasa_kd.models import bert
    from rasa_kd.models.student import StudentVocab

    teacher = run.saved_teacher()
    expected = StudentVocab.from_teacher_ids(
        bert.encode(teacher.tokenizer, [r["text"] for r in rows], config.student.bilstm.max_seq_length, False), teacher.tokenizer)
    assert student.vocab.tokens == expected.tokens
    record = json.loads((out / "student_training.json").read_text())
    assert record["examples"] == len(rows) and len(record["epochs"]) == 4
    assert record["epochs"][-1]["loss"] < record["epochs"][0]["loss"]
    loaded = StudentModel.load(out / "student")
    np.testing.assert_allclose(loaded.logits(["hello there", "bye"]), student.logits(["hello there", "bye"]), atol=1e-4)


def test_small_sets_stay_in_memory_as_before(bilstm_run):
    """Below ``compute.stream_from`` (the default 200,000) nothing changes: the set is written in its built
    order (training sentences first) and labelled in memory."""
    out = bilstm_run[0]
    first = json.loads((out / "transfer_set.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["source"] == "train"
    assert json.loads((out / "labelling.json").read_text())["streamed"] is False
    assert not list((out / "cache").glob("tokens-*"))


def test_missing_logits_are_said_before_training(tmp_path):
    stream = _stream(tmp_path, [10, 10], batch_size=4)
    _shard_path(stream.logits_folder, 1).unlink()
    with pytest.raises(DataError, match=r"1 of 2 shards of teacher logits are missing in .*logits \(shard 1 first\)"):
        ShardStream(stream.tokens, stream.logits_folder, 2, 4)


def test_a_crashed_streamed_training_resumes_to_the_uninterrupted_weights(tmp_path, bilstm_run, monkeypatch):
    from rasa_kd.distill.config import StudentTrainingSettings
    from rasa_kd.distill.streaming import token_shards
    from rasa_kd.distill.student_training import StudentTrainer, train_student
    from rasa_kd.models.architectures import BiLSTMSettings
    from rasa_kd.models.student import new_student
    from rasa_kd.models.teacher import Teacher

    teacher = Teacher.load(bilstm_run[0] / "teacher")
    transfer = TransferSetFile(bilstm_run[0] / "transfer_set.jsonl")
    tokens = token_shards(transfer, teacher, 16, False, 64, tmp_path / "cache", progress=False)
    logits = label_transfer_set(teacher, transfer, tmp_path / "cache", shard_size=64, progress=False, keep_logits=False)
    settings = StudentTrainingSettings(epochs=3, batch_size=16, learning_rate=5e-3)

    def train(resume_dir=None, crash_at=None):
        student, _ = new_student("bilstm", BiLSTMSettings(hidden_units=8, dense_units=8, max_seq_length=16), teacher, None, 1,
                                 used=tokens.used)
        if crash_at is not None:
            original, calls = StudentTrainer.train_step, []

            def crashing(self, batch):
                calls.append(1)
                if len(calls) == crash_at:
                    raise RuntimeError("killed")
                return original(self, batch)

            monkeypatch.setattr(StudentTrainer, "train_step", crashing)
        try:
            train_student(student, None, None, None, student.encode(["hello", "bye"]), [teacher.labels[0]] * 2, settings, None,
                          progress=False, resume_dir=resume_dir, checkpoint_seconds=0.0,
                          stream=ShardStream(tokens, logits.cache_dir, len(teacher.labels), settings.batch_size))
        finally:
            monkeypatch.undo()
        return student.network.get_weights()

    whole = train()
    steps_per_epoch = ShardStream(tokens, logits.cache_dir, len(teacher.labels), settings.batch_size).steps_per_epoch()
    with pytest.raises(RuntimeError, match="killed"):
        train(tmp_path / "resume", crash_at=steps_per_epoch + 3)  # mid-shard, in the second epoch
    resumed = train(tmp_path / "resume")
    for a, b in zip(whole, resumed):
        np.testing.assert_allclose(a, b, atol=1e-5)
