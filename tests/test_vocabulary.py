"""A student reads every WordPiece its teacher knows, not only those its transfer set showed."""
import numpy as np
import pytest

from rasa_kd.distill import pipeline
from rasa_kd.distill.config import load_config
from rasa_kd.models.networks import UNK
from rasa_kd.models.student import StudentModel, VocabExtension
from tests.tiny_models import TINY_DISTILL

# Training data that never uses "farewell", "pizzas" or "cheese" (all in the tiny teacher's vocabulary).
EXAMPLES = {
    "greet": ["hello", "hi there", "hello friend", "hey", "good morning", "hey bot"],
    "goodbye": ["bye", "goodbye", "see you later", "bye bye", "good night", "bye friend"],
    "order_pizza": ["i want a pizza", "order a pizza", "pizza please", "get me a pizza", "a large pizza", "pizza now"],
}
UNSEEN = ["farewell", "pizzas", "cheese"]


def distil(tiny_bert_dir, tmp_path, kind, vocabulary):
    texts = [t for ts in EXAMPLES.values() for t in ts]
    intents = [i for i, ts in EXAMPLES.items() for _ in ts]
    settings = {k: v for k, v in TINY_DISTILL.items() if not k.startswith(("evaluation", "data"))}
    config = load_config(None, {**settings, "teacher.model": str(tiny_bert_dir), "student.type": kind,
                                         "transfer_set.augmentation": "none", "student.training.epochs": 2,
                                         # Synthetic out-of-scope sentences would bring the unseen words in.
                                         "transfer_set.outliers": 0.0,
                                         f"student.{kind}.vocabulary": vocabulary})
    return pipeline.distil_examples(texts, intents, config, output=tmp_path / f"{kind}-{vocabulary}", progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("vocabulary")


@pytest.fixture(scope="module")
def students(tiny_bert_dir, runs):
    return {(kind, vocabulary): distil(tiny_bert_dir, runs, kind, vocabulary)
            for kind in ("bilstm", "tinybert") for vocabulary in ("teacher", "transfer_set")}


@pytest.mark.parametrize("kind", ["bilstm", "tinybert"])
def test_a_word_the_transfer_set_never_had_is_read_as_itself(students, kind):
    full, pruned = students[(kind, "teacher")], students[(kind, "transfer_set")]
    for word in UNSEEN:
        assert (pruned.encode([word])[0] == UNK).any(), word  # as before: [UNK]
        ids = full.encode([word])[0]
        words = ids[1:-1] if full.special_tokens else ids  # without [CLS] and [SEP]
        assert not (ids == UNK).any(), word
        assert (words >= full.vocab.size).all()  # a row of the extension, after the trained ones
    # Distinct unseen words get distinct inputs, so distinct answers; [UNK] gave them one.
    logits = full.logits(UNSEEN)
    assert not np.allclose(logits[0], logits[1]) and not np.allclose(logits[1], logits[2])
    np.testing.assert_allclose(pruned.logits(["farewell"]), pruned.logits(["cheese"]), atol=1e-6)


def test_the_extension_holds_the_rows_the_words_would_have_started_from(students, runs):
    from rasa_kd.models.networks import contextual_table
    from rasa_kd.models.teacher import Teacher

    student = students[("bilstm", "teacher")]
    assert student.architecture["embeddings"] == "contextual"  # 18 training examples: a small bot's default
    teacher = Teacher.load(runs / "bilstm-teacher" / "teacher")  # the fine-tuned one, whose view the BiLSTM starts from
    table = contextual_table(teacher, teacher.model.get_input_embeddings().weight.numpy())
    word_id = teacher.tokenizer.convert_tokens_to_ids("farewell")
    row = student.extension.table()[list(student.extension.teacher_ids).index(word_id)]
    # 4 bits with a scale per row: within half a quantisation step of the row it would have started from.
    step = np.abs(table[word_id]).max() / 7
    np.testing.assert_allclose(row, table[word_id], atol=step / 2 + 1e-6)
    assert teacher.tokenizer.mask_token_id not in student.extension.teacher_ids


def test_a_small_bots_tinybert_starts_from_the_teachers_contextual_rows_projected(students, runs):
    from rasa_kd.models.networks import contextual_table, fit_projection
    from rasa_kd.models.teacher import Teacher

    student = students[("tinybert", "teacher")]
    assert student.architecture["embeddings"] == "contextual"  # 18 training examples: a small bot's default
    teacher = Teacher.load(runs / "tinybert-teacher" / "teacher")
    inputs = teacher.model.get_input_embeddings().weight.numpy()
    word_id = teacher.tokenizer.convert_tokens_to_ids("farewell")
    row = student.extension.table()[list(student.extension.teacher_ids).index(word_id)]
    for table, holds in ((contextual_table(teacher, inputs), True), (inputs, False)):
        # Projected to the student's width by the principal components of its vocabulary's rows.
        expected = fit_projection(table[student.vocab.teacher_ids], 16)(table[[word_id]])[0]
        step = np.abs(expected).max() / 7  # 4 bits with a scale per row: within half a step
        assert np.allclose(row, expected, atol=step / 2 + 1e-6) == holds


def test_contextual_rows_are_the_teachers_last_layer_over_each_wordpiece_alone(tiny_bert_dir):
    from types import SimpleNamespace

    from rasa_kd.models import bert
    from rasa_kd.models.networks import contextual_table

    tokenizer = bert.load_tokenizer(tiny_bert_dir)
    model = bert.load_sequence_classifier(tiny_bert_dir, ["a", "b"])
    table = model.get_input_embeddings().weight.numpy()
    rows = contextual_table(SimpleNamespace(tokenizer=tokenizer, model=model), table, batch_size=7)  # a short last batch
    # The same through the classifier's own forward pass, one sentence "[CLS] piece [SEP]" at a time.
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    expected = np.stack([model(np.array([[cls, piece, sep]]), output_hidden_states=True).hidden_states[-1][0].numpy().mean(axis=0)
                         for piece in range(len(table))])
    centred = expected - expected.mean(axis=0)
    expected = centred * (table.std() / centred.std())
    np.testing.assert_allclose(rows, expected, atol=1e-4)
    assert not np.allclose(rows, table, atol=1e-2)  # not the input rows


def test_contextual_rows_are_kept_under_the_teachers_fingerprint_and_read_back(tiny_bert_dir, tmp_path, caplog):
    from types import SimpleNamespace

    from rasa_kd.models import bert
    from rasa_kd.models.networks import contextual_table

    tokenizer = bert.load_tokenizer(tiny_bert_dir)
    model = bert.load_sequence_classifier(tiny_bert_dir, ["a", "b"])
    table = model.get_input_embeddings().weight.numpy()
    teacher = SimpleNamespace(tokenizer=tokenizer, model=model, fingerprint="f00d")
    rows = contextual_table(teacher, table, cache_dir=tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["contextual-rows-f00d.npy"]  # no temporary file left

    # Read back, not recomputed: a teacher that cannot run gives the same rows.
    caplog.set_level("INFO", logger="rasa_kd.models.networks")
    broken = SimpleNamespace(tokenizer=tokenizer, model=SimpleNamespace(bert=None), fingerprint="f00d")
    np.testing.assert_array_equal(contextual_table(broken, table, cache_dir=tmp_path / "cache"), rows)
    assert "reusing the teacher's contextual rows" in caplog.text
    # Another teacher (another fingerprint) does not read them, nor does a file of another shape count.
    with pytest.raises(TypeError):  # it tries to run the teacher
        contextual_table(SimpleNamespace(tokenizer=tokenizer, model=SimpleNamespace(bert=None), fingerprint="beef"), table,
                         cache_dir=tmp_path / "cache")
    np.save(tmp_path / "cache" / "contextual-rows-f00d.npy", rows[:3])
    np.testing.assert_allclose(contextual_table(teacher, table, cache_dir=tmp_path / "cache"), rows, atol=1e-6)
    assert np.load(tmp_path / "cache" / "contextual-rows-f00d.npy").shape == table.shape  # replaced by whole rows


@pytest.mark.parametrize("kind", ["bilstm", "tinybert"])
def test_an_extended_student_round_trips_and_serves_alike_in_numpy_and_tensorflow(students, kind, tmp_path):
    student = students[(kind, "teacher")]
    texts = ["farewell friend", "cheese pizzas please", "hello", "unknownword 😀", "good night bot"]
    loaded = StudentModel.load(student.save(tmp_path / kind))
    assert loaded.extension is not None and (tmp_path / kind / VocabExtension.FILE).is_file()
    np.testing.assert_allclose(loaded.logits(texts), student.logits(texts), atol=1e-5)  # batch: TensorFlow
    single = np.concatenate([loaded.logits([t]) for t in texts])  # one at a time: NumPy
    np.testing.assert_allclose(single, loaded.logits(texts), atol=1e-4)
    assert loaded.parameter_count() > loaded.network.count_params()


@pytest.mark.parametrize("width", [6, 7])
def test_a_four_bit_extension_saves_and_loads_the_same_rows(tmp_path, width):
    rng = np.random.default_rng(0)
    table = rng.normal(size=(5, width)).astype(np.float32)
    extension = VocabExtension.quantise(np.arange(10, 15), table)
    assert np.abs(extension.rows).max() == 7  # 15 levels: the largest value of each row is +-7
    extension.save(tmp_path / VocabExtension.FILE)
    with np.load(tmp_path / VocabExtension.FILE) as data:
        assert int(data["bits"]) == 4 and data["rows"].shape == (5, (width + 1) // 2)  # two values a byte
    loaded = VocabExtension.load(tmp_path / VocabExtension.FILE)
    np.testing.assert_array_equal(loaded.rows, extension.rows)
    np.testing.assert_array_equal(loaded.teacher_ids, np.arange(10, 15))
    np.testing.assert_allclose(loaded.table(), table, atol=float(np.abs(table).max()) / 7 / 2 + 1e-6)


def test_an_int8_extension_written_before_the_four_bit_format_still_loads(tmp_path):
    rows = np.array([[-127, 0, 127], [5, -6, 100]], dtype=np.int8)
    with open(tmp_path / VocabExtension.FILE, "wb") as handle:  # the layout of the int8 format: no "bits"
        np.savez_compressed(handle, teacher_ids=np.array([3, 9]), rows=rows, scales=np.array([0.5, 2.0], dtype=np.float32))
    loaded = VocabExtension.load(tmp_path / VocabExtension.FILE)
    np.testing.assert_array_equal(loaded.rows, rows)
    np.testing.assert_allclose(loaded.table(), rows * np.array([[0.5], [2.0]]))
    # An int8 extension that is saved again stays int8: its values do not fit 4 bits.
    loaded.save(tmp_path / "again.npz")
    np.testing.assert_array_equal(VocabExtension.load(tmp_path / "again.npz").rows, rows)


def test_the_saved_tokenizer_without_tokenizer_json_encodes_as_the_teacher_does(students, tmp_path):
    student = students[("bilstm", "teacher")]
    folder = student.save(tmp_path / "student")
    assert not (folder / "tokenizer" / "tokenizer.json").exists() and (folder / "tokenizer" / "vocab.txt").is_file()
    loaded = StudentModel.load(folder)
    texts = ["Farewell, FRIEND!", "cheese pizzas please", "naïve café 東京", "unknownword 😀", "  spaced\tout  "]
    for text in texts:
        assert loaded.tokenizer(text)["input_ids"] == student.tokenizer(text)["input_ids"], text
    np.testing.assert_allclose(loaded.logits(texts), student.logits(texts), atol=1e-5)


@pytest.mark.parametrize("embeddings", ["contextual", "teacher"])
def test_frozen_embeddings_stay_as_they_started_through_training(tiny_bert_dir, runs, embeddings, caplog):
    from rasa_kd.models.networks import contextual_table
    from rasa_kd.models.teacher import Teacher

    texts = [t for ts in EXAMPLES.values() for t in ts]
    intents = [i for i, ts in EXAMPLES.items() for _ in ts]
    settings = {k: v for k, v in TINY_DISTILL.items() if not k.startswith(("evaluation", "data"))}
    # contextual: a small bot's defaults, nothing set; teacher: the input rows, frozen by hand.
    given = {} if embeddings == "contextual" else {"student.bilstm.embeddings": "teacher", "student.bilstm.train_embeddings": False}
    config = load_config(None, {**settings, "teacher.model": str(tiny_bert_dir), "student.type": "bilstm",
                                "transfer_set.augmentation": "none", "student.training.epochs": 2, **given})
    caplog.set_level("INFO", logger="rasa_kd.distill.pipeline")
    student = pipeline.distil_examples(texts, intents, config, output=runs / f"frozen-{embeddings}", progress=False)
    # The log says what the data's size chose, and only when it chose.
    assert ("student: contextual embedding rows, frozen (chosen for" in caplog.text) == (embeddings == "contextual")
    teacher = Teacher.load(runs / f"frozen-{embeddings}" / "teacher")
    table = teacher.model.get_input_embeddings().weight.numpy()
    if embeddings == "contextual":
        table = contextual_table(teacher, table)
    # Kept in the run's cache under the teacher's fingerprint for a resumed stage or another worker.
    kept = list((runs / f"frozen-{embeddings}" / "cache").glob("contextual-rows-*.npy"))
    assert [p.name for p in kept] == ([f"contextual-rows-{teacher.fingerprint}.npy"] if embeddings == "contextual" else [])
    np.testing.assert_allclose(student.network.get_layer("embedding").get_weights()[0], table[student.vocab.teacher_ids], atol=1e-6)
    assert student.architecture["train_embeddings"] is False and student.architecture["embeddings"] == embeddings
    # The other layers did learn; the saved folder serves the same answers.
    assert len(student.network.trainable_weights) < len(student.network.weights)
    loaded = StudentModel.load(runs / f"frozen-{embeddings}" / "student")
    np.testing.assert_allclose(loaded.logits(texts), student.logits(texts), atol=1e-5)
