import json

import numpy as np
import pytest

from rasa_kd.models import bert
from rasa_kd.errors import ConfigError, DataError, ModelLoadError
from rasa_kd.models.teacher import Teacher, TeacherSettings
from rasa_kd.distill.augment import MASK
from rasa_kd.distill.teacher_training import fine_tune_teacher, masked_copies
from tests.tiny_models import intent_pairs

# The tiny BERT's embeddings are random: train them (a real base model's stay frozen on small sets by default).
FAST = dict(epochs=25, batch_size=8, learning_rate=2e-3, warmup_ratio=0.0, max_seq_length=16, train_embeddings=True)


@pytest.fixture(scope="module")
def trained(tiny_bert_dir):
    texts, intents = intent_pairs()
    settings = TeacherSettings(model=str(tiny_bert_dir), **FAST)
    teacher, history = fine_tune_teacher(texts, intents, settings, dev=(texts, intents), progress=False)
    return teacher, history


def test_fine_tuning_lowers_the_loss_and_learns_the_intents(trained):
    teacher, history = trained
    assert teacher.labels == ["goodbye", "greet", "order_pizza"]
    assert history.epochs[-1].loss < 0.5 * history.epochs[0].loss
    texts, intents = intent_pairs()
    predicted = [teacher.labels[i] for i in teacher.logits(texts).argmax(axis=1)]
    assert np.mean([p == g for p, g in zip(predicted, intents)]) >= 0.9
    assert history.epochs[-1].dev["accuracy"] >= 0.9


def test_a_small_sets_teacher_keeps_the_base_embeddings_unless_asked(trained, tiny_bert_dir):
    texts, intents = intent_pairs()
    base = bert.load_sequence_classifier(tiny_bert_dir, ["a", "b", "c"]).bert
    fast = {key: value for key, value in FAST.items() if key != "train_embeddings"}
    frozen, _ = fine_tune_teacher(texts, intents, TeacherSettings(model=str(tiny_bert_dir), **{**fast, "epochs": 2}), progress=False)
    assert frozen.settings.train_embeddings is False  # a few dozen examples: the default freezes the embedding layer
    np.testing.assert_array_equal(frozen.model.bert.embeddings.weight.numpy(), base.embeddings.weight.numpy())
    query = base.encoder.layer[0].attention.self_attention.query.kernel.numpy()
    assert not np.allclose(frozen.model.bert.encoder.layer[0].attention.self_attention.query.kernel.numpy(), query)
    teacher, _ = trained  # asked for: the rows move
    assert teacher.settings.train_embeddings is True
    assert not np.allclose(teacher.model.bert.embeddings.weight.numpy(), base.embeddings.weight.numpy())


def test_logits_do_not_depend_on_batching(trained):
    teacher, _ = trained
    texts, _ = intent_pairs()
    whole = teacher.logits(texts, batch_size=64)
    ones = np.concatenate([teacher.logits([t], batch_size=1) for t in texts[:5]])
    assert whole.shape == (len(texts), 3) and whole.dtype == np.float32
    np.testing.assert_allclose(ones, whole[:5], atol=1e-5)


def test_save_and_load_give_identical_logits(trained, tmp_path):
    teacher, _ = trained
    path = teacher.save(tmp_path / "teacher")
    record = json.loads((path / "rasa_kd.json").read_text())
    assert record["kind"] == "teacher" and record["labels"] == teacher.labels
    assert record["versions"]["tensorflow"].startswith("2.12")
    loaded = Teacher.load(path)
    texts, _ = intent_pairs()
    np.testing.assert_array_equal(loaded.logits(texts), teacher.logits(texts))
    assert loaded.settings == teacher.settings and loaded.fingerprint == record["fingerprint"]


def test_a_teacher_saved_before_outlier_exposure_loads_as_trained_without_it(trained, tmp_path):
    teacher, _ = trained
    path = teacher.save(tmp_path / "teacher")
    record = json.loads((path / "rasa_kd.json").read_text())
    assert record["settings"]["outliers"] == 0.5
    del record["settings"]["outliers"], record["settings"]["outlier_weight"]
    (path / "rasa_kd.json").write_text(json.dumps(record))
    assert Teacher.load(path).settings.outliers == 0.0


def test_a_crash_while_saving_leaves_no_folder(trained, tmp_path, monkeypatch):
    teacher, _ = trained

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(teacher.tokenizer, "save_pretrained", fail)
    with pytest.raises(KeyboardInterrupt):
        teacher.save(tmp_path / "teacher")
    assert list(tmp_path.iterdir()) == []


def test_damaged_or_incomplete_folders_fail_with_the_file_named(trained, tmp_path):
    teacher, _ = trained
    path = teacher.save(tmp_path / "teacher")
    (path / "tf_model.h5").write_bytes(b"not weights")
    with pytest.raises(ModelLoadError, match="tf_model.h5 does not match its checksum"):
        Teacher.load(path)
    (path / "rasa_kd.json").unlink()
    with pytest.raises(ModelLoadError, match="has no rasa_kd.json"):
        Teacher.load(path)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epochs": 0}, "'epochs' must be an integer from 1 to 1000, got 0"),
        ({"epochs": "3"}, "'epochs' must be an integer from 1 to 1000, got '3' \\(str\\)"),
        ({"batch_size": True}, "'batch_size' must be an integer"),
        ({"learning_rate": -1}, "'learning_rate' must be a number in \\(0.0, 1.0\\]"),
        ({"warmup_ratio": 1.0}, "'warmup_ratio' must be a number in \\[0.0, 1.0\\)"),
        ({"max_seq_length": 4}, "'max_seq_length' must be an integer from 8 to 512, got 4"),
        ({"model": ""}, "'model' must be a non-empty string or null"),
        ({"epoch": 3}, "unknown setting\\(s\\) 'epoch'; allowed: model, epochs"),
    ],
)
def test_bad_settings_name_the_key_and_what_is_allowed(values, message):
    with pytest.raises(ConfigError, match=message):
        TeacherSettings.from_dict(values)


def test_learning_rate_accepts_yaml_1_1_strings():
    assert TeacherSettings.from_dict({"learning_rate": "5e-5"}).learning_rate == 5e-5


def test_one_intent_is_not_enough(tiny_bert_dir):
    with pytest.raises(DataError, match="at least 2 intents"):
        fine_tune_teacher(["hi", "hello"], ["greet", "greet"], TeacherSettings(model=str(tiny_bert_dir)), progress=False)


def test_max_seq_length_beyond_the_model_is_refused(tiny_bert_dir):
    texts, intents = intent_pairs()
    settings = TeacherSettings(model=str(tiny_bert_dir), max_seq_length=256)
    with pytest.raises(ConfigError, match="'max_seq_length' is 256 but .* supports at most 128"):
        fine_tune_teacher(texts, intents, settings, progress=False)


def test_missing_model_folders_are_explained(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        bert.resolve_model_dir(str(tmp_path / "nowhere"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="neither tf_model.h5 nor model.safetensors"):
        bert.resolve_model_dir(str(tmp_path))


def test_the_packaged_default_model_loads_offline_with_a_new_head():
    model_dir = bert.resolve_model_dir(None)
    model = bert.load_sequence_classifier(model_dir, ["a", "b", "c"])
    tokenizer = bert.load_tokenizer(model_dir)
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    ids = bert.encode(tokenizer, ["Hello wörld 😀"], 16)
    assert ids == [[101, 7592, 2088, 100, 102]]
    logits = bert.classifier_forward(model)(*bert.pad(ids, tokenizer.pad_token_id))
    assert logits.shape == (1, 3)
    # The encoder is the packaged one, not random: its word embedding matches the file.
    from safetensors.numpy import load_file

    stored = load_file(str(model_dir / "model.safetensors"))["embeddings.word_embeddings.weight"]
    np.testing.assert_array_equal(model.get_input_embeddings().weight.numpy(), stored)


def test_length_grouped_batches_cover_every_index_once():
    lengths = [5, 1, 9, 3, 3, 7, 2, 8, 4, 6]
    for rng in (None, np.random.default_rng(0)):
        batches = bert.length_grouped_batches(lengths, 3, rng)
        assert sorted(np.concatenate(batches).tolist()) == list(range(10))
        assert all(len(b) <= 3 for b in batches)


def test_the_fast_encoder_gives_the_transformers_tokenizer_ids():
    model_dir = bert.resolve_model_dir(None)
    tokenizer = bert.load_tokenizer(model_dir)
    texts = ["Hello wörld 😀", "", "  ", "\x00\x1b[31m", "a " * 300, "Don't STOP-me now!", "naïve café"]
    for special in (True, False):
        encoder = bert.Encoder(tokenizer, 16, special_tokens=special)
        expected = tokenizer(texts, truncation=True, max_length=16, add_special_tokens=special)["input_ids"]
        assert encoder(texts) == expected
        assert [encoder([t])[0] for t in texts] == expected
    assert bert.Encoder(tokenizer, 16).special_count == 2 and bert.Encoder(tokenizer, 16, False).special_count == 0
    # The wrapper resets truncation on its backend at every call; the encoder keeps its own copy.
    encoder = bert.Encoder(tokenizer, 4)
    tokenizer(["x " * 50], truncation=True, max_length=30)
    assert len(encoder(["x " * 50])[0]) == 4


@pytest.mark.parametrize("examples, outliers, masked, epochs, batch_size", [
    (70, 0.0, 0.0, 30, 16),     # 5 steps an epoch: capped at 30 epochs
    (161, 0.0, 0.0, 30, 16),    # Spokes
    (561, 0.0, 0.0, 20, 16),    # 36 steps an epoch: 20 epochs make about 700 steps
    (561, 0.5, 0.0, 14, 16),    # with 281 synthetic out-of-scope sentences, 53 steps an epoch: the same ~700 steps
    (561, 0.5, 0.5, 10, 16),    # and 280 masked copies, 71 steps an epoch
    (999, 0.0, 0.0, 12, 16),
    (1000, 0.0, 0.0, 22, 32),   # from 1,000 examples batches of 32, still about 700 steps
    (1054, 0.5, 0.0, 14, 32),   # Sara-20: 10 epochs made 500 steps, fewer than Sara-10's and Sara-40's
    (1054, 0.5, 0.5, 11, 32),   # with masked copies: 66 steps an epoch
    (1595, 0.5, 0.5, 10, 32),   # Sara-40: 100 steps an epoch, 10 epochs at least
    (2487, 0.5, 0.5, 10, 32),   # a large set pays for its out-of-scope sentences and copies with longer epochs
])
def test_the_teacher_schedule_adapts_to_the_data_size(examples, outliers, masked, epochs, batch_size):
    resolved = TeacherSettings(outliers=outliers, masked_copies=masked).for_examples(examples)
    assert (resolved.epochs, resolved.batch_size) == (epochs, batch_size)
    assert resolved.train_embeddings is (examples >= 1000)  # a small bot's teacher keeps the base embeddings
    assert resolved.outlier_count(examples) == round(outliers * examples)
    assert resolved.masked_count(examples) == round(masked * examples)


def test_a_schedule_given_explicitly_is_kept():
    resolved = TeacherSettings(epochs=3, batch_size=64).for_examples(100)
    assert (resolved.epochs, resolved.batch_size) == (3, 64)
    assert TeacherSettings(batch_size=8).for_examples(100).epochs == 30  # 13 steps an epoch: capped
    assert TeacherSettings(batch_size=64).for_examples(2000).epochs == 15  # 3,000 sentences with outliers: 47 steps an epoch
    assert TeacherSettings(train_embeddings=True).for_examples(100).train_embeddings is True
    assert TeacherSettings(train_embeddings=False).for_examples(5000).train_embeddings is False


def test_label_smoothing_caps_the_teachers_confidence_on_what_it_learnt(tiny_bert_dir):
    texts, intents = intent_pairs()
    # The fast settings of tests/test_outliers.py, without outliers. With 3 intents and 0.3 smoothing the best
    # target is 0.7 + 0.3 / 3 = 0.8 on the gold intent, where plain cross-entropy pushes towards 1.
    fast = dict(model=str(tiny_bert_dir), epochs=25, batch_size=8, learning_rate=5e-3, warmup_ratio=0.0, max_seq_length=16,
                train_embeddings=True, outliers=0.0)
    top = {}
    for smoothing in (0.0, 0.3):
        teacher, _ = fine_tune_teacher(texts, intents, TeacherSettings(label_smoothing=smoothing, **fast), progress=False)
        logits = teacher.logits(texts)
        assert np.mean([teacher.labels[p] == g for p, g in zip(logits.argmax(axis=1), intents)]) >= 0.9
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        top[smoothing] = (probabilities / probabilities.sum(axis=1, keepdims=True)).max(axis=1).mean()
    assert top[0.0] > 0.9 and 0.7 < top[0.3] < 0.88, top


def test_masked_copies_hide_words_of_training_sentences_and_keep_their_intents():
    texts = ["book a repair for my bike", "hello there", "where is your shop", "bye"]
    intents = ["book", "greet", "ask_location", "goodbye"]
    copies, labels = masked_copies(texts, intents, 200, seed=3)
    assert (copies, labels) == masked_copies(texts, intents, 200, seed=3)  # deterministic
    assert len(copies) == len(labels) == 200
    for copy, label in zip(copies, labels):
        source = texts[intents.index(label)].split()
        words = copy.split()
        assert len(words) == len(source) and MASK in words  # one word hidden at least
        assert all(w == s for w, s in zip(words, source) if w != MASK)  # the others as they were
    hidden = np.mean([w == MASK for c in copies for w in c.split()])
    one_word = sum(1 for c in copies if c == MASK)  # "bye" can only become [MASK]
    assert one_word > 0 and 0.1 < hidden < 0.5, hidden
    assert masked_copies(texts, intents, 0, seed=3) == ([], [])


def test_masked_copies_share_the_teachers_step_budget():
    plain = TeacherSettings(outliers=0.5, masked_copies=0.0).for_examples(561)
    masked = TeacherSettings(outliers=0.5, masked_copies=0.5).for_examples(561)
    assert masked.masked_count(561) == 280 and plain.masked_count(561) == 0
    assert (plain.epochs, masked.epochs) == (14, 10)  # 53 steps an epoch, then 71: about 700 steps either way
