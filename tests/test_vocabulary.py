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
    from rasa_kd.models.teacher import Teacher

    student = students[("bilstm", "teacher")]
    teacher = Teacher.load(runs / "bilstm-teacher" / "teacher")  # the fine-tuned one, whose rows the BiLSTM starts from
    teacher_table = teacher.model.get_input_embeddings().weight.numpy()
    word_id = teacher.tokenizer.convert_tokens_to_ids("farewell")
    row = student.extension.table()[list(student.extension.teacher_ids).index(word_id)]
    # int8 with a scale per row: within half a quantisation step of the teacher's row.
    step = np.abs(teacher_table[word_id]).max() / 127
    np.testing.assert_allclose(row, teacher_table[word_id], atol=step / 2 + 1e-7)
    assert teacher.tokenizer.mask_token_id not in student.extension.teacher_ids


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
