"""Synthetic out-of-scope sentences (outlier exposure): how they are made, and what they do to a teacher."""
import numpy as np
import pytest

from rasa_kd.distill import outliers as outliers_module
from rasa_kd.distill.config import TransferSetSettings
from rasa_kd.distill.outliers import OutlierMaker, frame_share, frame_words, make_outliers, replacement_words
from rasa_kd.distill.teacher_training import fine_tune_teacher, masked_copies
from rasa_kd.distill.transfer_set import build_transfer_set, sentence_key
from rasa_kd.models.teacher import TeacherSettings
from tests.tiny_models import intent_pairs

# Ids in the order of a BERT vocabulary: frequent words first.
VOCAB = {token: i for i, token in enumerate(
    ["[PAD]", "[UNK]", "the", "can", "you", "my", "a", "what", "is", "of", "and", "city", "river", "music", "bike",
     "repair", "price", "book", "hello", "weather", "##s", "paris", "song", "x"])}
TEXTS = ["can you repair my bike", "what is the price of a repair", "can you book my bike", "hello bike", "what is a bike"]
INTENTS = ["repair", "price", "book", "greet", "ask"]


@pytest.fixture(autouse=True)
def ten_frame_words(monkeypatch):
    """The first 10 whole words of VOCAB count as very common (a real vocabulary: its first 1,000)."""
    monkeypatch.setattr(outliers_module, "FRAME_WORDS", 10)


def test_the_frame_is_common_words_many_intents_share():
    # "bike" is used by 4 of 5 intents but is no common word: it is swapped out with the topic.
    assert frame_words(TEXTS, INTENTS, VOCAB) == {"can", "you", "my", "what", "is", "a"}
    words = replacement_words(VOCAB, TEXTS)
    assert "bike" not in words and "the" not in words and "x" not in words and "##s" not in words
    assert words[:3] == ["and", "city", "river"]  # in id order, unused by the training sentences


def test_outliers_are_deterministic_new_and_of_every_kind():
    first = make_outliers(TEXTS, INTENTS, VOCAB, 400, seed=3)
    assert first == make_outliers(TEXTS, INTENTS, VOCAB, 400, seed=3)
    assert first != make_outliers(TEXTS, INTENTS, VOCAB, 400, seed=4)
    assert len(first) == 400 and all(s.strip() for s in first)
    training = {sentence_key(t) for t in TEXTS}
    assert not any(sentence_key(s) in training for s in first)
    content = {"repair", "price", "book", "hello", "bike"}
    assert not any(content & set(s.split()) for s in first)  # no training topic survives
    frames = [s for s in first if {"can", "you"} <= set(s.split())]
    assert frames, "some outliers keep a training sentence's frame"
    assert any(not s.isascii() for s in first) and any(s.isascii() and not set(s.split()) & set(VOCAB) for s in first)
    assert make_outliers(TEXTS, INTENTS, VOCAB, 0, seed=3) == []


def test_frame_share_is_the_mean_share_of_frame_words_in_a_sentence():
    frame = frame_words(TEXTS, INTENTS, VOCAB)
    # can you [repair] my [bike]: 3/5; what is [the price of] a [repair]: 3/7; 3/5; hello bike: 0; what is a [bike]: 3/4
    assert frame_share(TEXTS, frame) == pytest.approx((3 / 5 + 3 / 7 + 3 / 5 + 0 + 3 / 4) / 5)
    assert frame_share(["", "42"], frame) == 0.0  # sentences without words are left out
    assert OutlierMaker(TEXTS, INTENTS, VOCAB, np.random.default_rng(0)).make_frames


def test_no_frames_where_the_frame_is_most_of_every_sentence():
    # Like TREC's question types: every word is common and shared, so a sentence with its other words swapped
    # would keep nearly all of it, and with it the words that tell the intents apart.
    texts = ["what is the city", "what is a city", "can you the city", "can you a city"]
    intents = ["x", "y", "z", "x"]
    maker = OutlierMaker(texts, intents, VOCAB, np.random.default_rng(0))
    assert maker.frame_share == 1.0 and not maker.make_frames
    used = {w for t in texts for w in t.split()}
    outliers = maker(300)
    assert not any(len(used & set(s.split())) >= 2 for s in outliers)
    assert sum(s.isascii() and set(s.split()) <= set(VOCAB) for s in outliers) > 150  # word strings took the frames' share


def test_a_vocabulary_without_spare_words_is_refused():
    with pytest.raises(ValueError, match="no replacement words"):
        OutlierMaker(TEXTS, INTENTS, {"can": 0, "you": 1}, np.random.default_rng(0))


def test_the_transfer_set_gives_outliers_their_share_and_no_intent():
    maker = OutlierMaker(TEXTS, INTENTS, VOCAB, np.random.default_rng(0))
    settings = TransferSetSettings(size=100, outliers=0.2, augmentation="none")
    result = build_transfer_set(TEXTS, INTENTS, [], settings, outlier_maker=maker)
    assert result.stats["by_source"]["outliers"] == 20 and result.stats["by_source"]["train"] == 5
    assert all(i is None for i, s in zip(result.intents, result.sources) if s == "outliers")
    without = build_transfer_set(TEXTS, INTENTS, [], TransferSetSettings(size=100, outliers=0.0, augmentation="none"),
                                 outlier_maker=maker)
    assert without.stats["by_source"]["outliers"] == 0


def test_a_teacher_trained_on_outliers_is_less_sure_of_messages_no_intent_covers(tiny_bert_dir):
    texts, intents = intent_pairs()
    # 5e-3: at 2e-3 the random 2-layer BERT stalled on two of the three intents for 7 of 12 seeds (with or without
    # outliers); at 5e-3 it learnt all three for 11 of 12 (benchmarks/NOTES.md, "Resumable dropout").
    fast = dict(model=str(tiny_bert_dir), epochs=25, batch_size=8, learning_rate=5e-3, warmup_ratio=0.0, max_seq_length=16,
                train_embeddings=True)
    unseen = ["what is that", "the and of", "qwzx plok", "that is not it", "how is this", "zzzz"]
    top = {}
    for outliers in (0.0, 1.0):
        teacher, record = fine_tune_teacher(texts, intents, TeacherSettings(outliers=outliers, **fast), progress=False)
        assert teacher.record["training"]["synthetic_outliers"] == round(outliers * len(texts))
        predicted = teacher.logits(texts).argmax(axis=1)
        assert np.mean([teacher.labels[p] == g for p, g in zip(predicted, intents)]) >= 0.9  # in scope still learnt
        logits = teacher.logits(unseen)
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        top[outliers] = (probabilities / probabilities.sum(axis=1, keepdims=True)).max(axis=1).mean()
    assert top[1.0] < top[0.0] - 0.1, top


def test_the_transfer_sets_outliers_draw_from_fewer_words():
    """Every word the transfer set shows becomes a trained row of the student: its outliers use a smaller pool."""
    few = OutlierMaker(TEXTS, INTENTS, VOCAB, np.random.default_rng(0), words=2)
    allowed = set(replacement_words(VOCAB, TEXTS)[:2]) | set(VOCAB)
    sentences = few(300)
    ascii_words = {w for s in sentences if s.isascii() for w in s.split()}
    assert {w for w in ascii_words if w in VOCAB} <= allowed
    assert not {w for w in ascii_words if w in VOCAB} & set(replacement_words(VOCAB, TEXTS)[2:])



def test_the_teacher_trains_on_its_masked_copies_with_their_intents(tiny_bert_dir, monkeypatch):
    from rasa_kd.distill import teacher_training

    seen = {}
    real = teacher_training.TeacherTrainer

    class Recording(real):
        def __init__(self, teacher, ids, targets, *args, **kwargs):
            seen.update(ids=ids, targets=targets, labels=teacher.labels, mask_id=teacher.tokenizer.mask_token_id)
            super().__init__(teacher, ids, targets, *args, **kwargs)

    monkeypatch.setattr(teacher_training, "TeacherTrainer", Recording)
    texts, intents = intent_pairs()
    settings = TeacherSettings(model=str(tiny_bert_dir), epochs=1, batch_size=8, max_seq_length=16, outliers=0.5, masked_copies=1.0)
    teacher, _ = fine_tune_teacher(texts, intents, settings, progress=False)
    n = len(texts)
    assert teacher.record["training"]["examples"] == n and teacher.record["training"]["masked_copies"] == n
    copies, copy_intents = masked_copies(texts, intents, n, settings.random_seed)
    # The training sentences, then their masked copies with their intents' ids, then the outliers (target -1).
    assert len(seen["ids"]) == 2 * n + round(0.5 * n)
    assert seen["ids"][n:2 * n] == teacher.encode(copies)
    assert all(seen["mask_id"] in ids for ids in seen["ids"][n:2 * n])
    assert [seen["labels"][t] for t in seen["targets"][n:2 * n]] == copy_intents
    assert (seen["targets"][2 * n:] == -1).all() and (seen["targets"][:2 * n] >= 0).all()
