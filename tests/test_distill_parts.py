"""Parts of the distillation trainer: config, augmentation, transfer set, losses, GPT-2."""
import dataclasses

import numpy as np
import pytest

from rasa_kd.distill.augment import MASK, RuleAugmenter, WordNeighbours
from rasa_kd.distill.config import RuleAugmentation, TransferSetSettings, load_config, parse_override
from rasa_kd.distill.streaming import TransferSetFile
from rasa_kd.distill.transfer_set import TransferSet, build_transfer_set
from rasa_kd.errors import ConfigError, DataError
from tests.tiny_models import DEV_EXAMPLES, intent_pairs


# --- config --------------------------------------------------------------------------------------


def test_config_file_flags_and_defaults(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("data:\n  train: a.yml\nstudent:\n  training:\n    epochs: 7\n")
    config = load_config(path, {"student.type": "tinybert", "student.training.loss": "kl"})
    assert config.data.train == "a.yml" and config.student.training.epochs == 7
    assert config.student.type == "tinybert" and config.student.training.loss == "kl"
    assert config.student.bilstm.hidden_units is None  # chosen by the data's size (for_examples)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"student.training.epochs": 0}, "'student.training.epochs' must be an integer from 1 to 10000, got 0"),
        ({"student.training.loss": "l1"}, "'student.training.loss' must be one of 'mse', 'kl'; got 'l1'"),
        ({"transfer_set.rules.mask_prob": 1.5}, "'transfer_set.rules.mask_prob' must be a number in \\[0.0, 1.0\\], got 1.5"),
        ({"student.bilstm.hiden_units": 5}, "unknown setting\\(s\\) 'student.bilstm.hiden_units'"),
        ({"transfer_set": 3}, "'transfer_set' must be a mapping of settings"),
    ],
)
def test_config_errors_name_the_full_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_config_file_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("teacher:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=f"{path}: 'teacher.epochs' must be an integer"):
        load_config(path)


def test_set_flag_values_are_yaml():
    assert parse_override("student.training.learning_rate=5e-4") == (["student", "training", "learning_rate"], 5e-4)
    assert parse_override("student.tinybert.teacher_layers=[1, 3]")[1] == [1, 3]
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("student.type")


# --- Tang et al. rules ---------------------------------------------------------------------------

VOCAB = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "hello", "hi", "hey", "pizza", "pie", "##s", "?"])}


def embeddings():
    table = np.zeros((len(VOCAB), 3), dtype=np.float32)
    table[VOCAB["hello"]] = [1, 0, 0]
    table[VOCAB["hi"]] = [0.9, 0.1, 0]
    table[VOCAB["hey"]] = [0.8, 0.3, 0]
    table[VOCAB["pizza"]] = [0, 0, 1]
    table[VOCAB["pie"]] = [0, 0.2, 0.9]
    table[VOCAB["##s"]] = [1, 0, 0.01]  # a sub-word piece is never a replacement
    return table


def test_neighbours_are_nearest_whole_words():
    neighbours = WordNeighbours(VOCAB, embeddings(), k=2)
    assert neighbours("Hello") == ["hi", "hey"]
    assert neighbours("pizza")[0] == "pie"
    assert neighbours("unknownword") == [] and neighbours("?") == []


def test_rules_mask_replace_and_cut():
    rng = np.random.default_rng(0)
    settings = RuleAugmentation(mask_prob=1.0, replace_prob=0.0, ngram_prob=0.0)
    assert RuleAugmenter(settings, None, rng)("hello big pizza") == f"{MASK} {MASK} {MASK}"
    settings = RuleAugmentation(mask_prob=0.0, replace_prob=1.0, ngram_prob=0.0, neighbours=1)
    assert RuleAugmenter(settings, WordNeighbours(VOCAB, embeddings(), k=1), rng)("hello pizza ?") == "hi pie ?"
    settings = RuleAugmentation(mask_prob=0.0, replace_prob=0.0, ngram_prob=1.0, ngram_min=2, ngram_max=3)
    cut = [RuleAugmenter(settings, None, rng)("a b c d e f g").split() for _ in range(50)]
    assert all(2 <= len(words) <= 3 for words in cut)
    assert all(" ".join(words) in "a b c d e f g" for words in cut)


def test_rules_are_repeatable_with_a_seed():
    settings = RuleAugmentation(mask_prob=0.3, replace_prob=0.3, ngram_prob=0.5)
    runs = [[RuleAugmenter(settings, WordNeighbours(VOCAB, embeddings(), 2), np.random.default_rng(7))(s)
             for s in ["hello pizza hi", "hey pie pizza hello"] * 5] for _ in range(2)]
    assert runs[0] == runs[1]


def test_a_rule_made_sentence_comes_with_its_masked_words_shown():
    settings = RuleAugmentation(mask_prob=0.4, replace_prob=0.3, ngram_prob=0.5, neighbours=2)
    make = lambda: RuleAugmenter(settings, WordNeighbours(VOCAB, embeddings(), 2), np.random.default_rng(5))  # noqa: E731
    sentences = ["hello pizza hi there friend", "hey pie pizza hello big"] * 20
    plain, paired = make(), make()
    pairs = [paired.pair(s) for s in sentences]
    assert [plain(s) for s in sentences] == [text for text, _ in pairs]  # the same draws: the same sentences
    assert any(MASK in text for text, _ in pairs) and all(MASK not in shown for _, shown in pairs)
    for sentence, (text, shown) in zip(sentences, pairs):
        words, shown_words = text.split(), shown.split()
        assert len(words) == len(shown_words)
        for word, shown_word in zip(words, shown_words):
            assert shown_word == word or (word == MASK and shown_word in sentence.split())
    # without swaps, the shown sentence is the original or the same cut of it
    no_swaps = RuleAugmenter(RuleAugmentation(mask_prob=0.5, replace_prob=0.0, ngram_prob=0.5), None, np.random.default_rng(1))
    for sentence in sentences:
        assert f" {no_swaps.pair(sentence)[1]} " in f" {sentence} "


def test_ngram_bounds_are_checked():
    with pytest.raises(ConfigError, match="'transfer_set.rules.ngram_min' \\(4\\) must not exceed 'ngram_max' \\(2\\)"):
        RuleAugmenter(RuleAugmentation(ngram_min=4, ngram_max=2), None, np.random.default_rng(0))


# --- the transfer set ----------------------------------------------------------------------------


def simple_rules(seed=0):
    return RuleAugmenter(RuleAugmentation(mask_prob=0.2, replace_prob=0.0, ngram_prob=0.5), None, np.random.default_rng(seed))


def test_no_dev_or_test_sentence_enters_the_transfer_set():
    texts, intents = intent_pairs()
    dev = [t for examples in DEV_EXAMPLES.values() for t in examples] + ["Hello  Friend"]  # also a training sentence
    transfer = build_transfer_set(texts, intents, dev, TransferSetSettings(size=200), rule_augmenter=simple_rules())
    keys = {" ".join(t.lower().split()) for t in transfer.texts}
    assert not keys & {" ".join(t.lower().split()) for t in dev}
    assert transfer.stats["dropped_dev_test"]["train"] == 1  # "hello friend" was dropped, and counted
    assert len(keys) == len(transfer) == 200
    assert transfer.stats["by_source"] == {"train": 35, "unlabelled": 0, "lm": 0, "outliers": 0, "rules": 165, "gpt2": 0}
    assert all(i is None for i, s in zip(transfer.intents, transfer.sources) if s != "train")


def test_training_sentences_in_dev_can_be_kept_but_new_ones_never():
    texts, intents = intent_pairs()
    settings = TransferSetSettings(size=120, drop_training_sentences_in_dev_test=False)
    transfer = build_transfer_set(texts, intents, ["hello friend", "hello"], settings, rule_augmenter=simple_rules(3))
    assert "hello friend" in transfer.texts and transfer.intents[transfer.texts.index("hello friend")] == "greet"
    assert [t for t, s in zip(transfer.texts, transfer.sources) if s == "rules" and t in ("hello", "hello friend")] == []


def test_size_multiplier_unlabelled_file_and_saturation(tmp_path):
    texts, intents = intent_pairs()
    unlabelled = tmp_path / "more.txt"
    unlabelled.write_text("pizza for two\n\nhello pizza\nhello pizza\n")
    settings = TransferSetSettings(size_multiplier=2.0, min_size=0, unlabelled_file=str(unlabelled), augmentation="none")
    transfer = build_transfer_set(texts, intents, [], settings)
    assert transfer.stats["target_size"] == 72
    assert transfer.stats["by_source"]["unlabelled"] == 2 and transfer.stats["dropped_duplicates"] == {"unlabelled": 1}
    assert len(transfer) == 38  # nothing to augment with: it stops short and says so in the stats


def test_with_label_unmasked_the_teacher_reads_a_masked_sentence_with_its_words_shown(tmp_path):
    texts, intents = intent_pairs()
    rules = simple_rules()
    rules.settings = dataclasses.replace(rules.settings, label_unmasked=True)  # the augmenter's rules decide, as in a run
    transfer = build_transfer_set(texts, intents, [], TransferSetSettings(size=200), rule_augmenter=rules)
    assert transfer.texts == build_transfer_set(texts, intents, [], TransferSetSettings(size=200), rule_augmenter=simple_rules()).texts
    masked = [i for i, t in enumerate(transfer.texts) if MASK in t]
    assert masked and transfer.stats["labelled_unmasked"] == len(masked)
    read = transfer.labelled_texts()
    for i, (text, shown) in enumerate(zip(transfer.texts, transfer.teacher_texts)):
        assert (shown is not None) == (i in masked)
        if shown is not None:
            assert MASK not in shown and len(shown.split()) == len(text.split()) and read[i] == shown
        else:
            assert read[i] == text
    transfer.save(tmp_path / "ts.jsonl")
    assert TransferSet.load(tmp_path / "ts.jsonl").teacher_texts == transfer.teacher_texts
    streamed = TransferSetFile(tmp_path / "ts.jsonl", teacher_texts=True)
    assert list(streamed) == read and streamed[masked[0]] == read[masked[0]]
    assert list(TransferSetFile(tmp_path / "ts.jsonl")) == transfer.texts


def test_transfer_set_round_trip_and_bad_rows(tmp_path):
    texts, intents = intent_pairs()
    transfer = build_transfer_set(texts, intents, [], TransferSetSettings(size=60), rule_augmenter=simple_rules())
    transfer.save(tmp_path / "ts.jsonl")
    loaded = TransferSet.load(tmp_path / "ts.jsonl")
    assert (loaded.texts, loaded.sources, loaded.intents) == (transfer.texts, transfer.sources, transfer.intents)
    (tmp_path / "bad.jsonl").write_text('{"text": "a", "source": "train"}\nnot json\n')
    with pytest.raises(DataError, match="bad.jsonl, line 2: not a transfer-set row"):
        TransferSet.load(tmp_path / "bad.jsonl")


# --- losses --------------------------------------------------------------------------------------


def test_losses_match_their_formulas():
    import tensorflow as tf

    from rasa_kd.distill import losses

    s = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], dtype=np.float32)
    t = np.array([[2.0, 1.0, 0.0], [0.5, 0.5, 2.0]], dtype=np.float32)
    assert float(losses.soft_target_loss(s, t, "mse", 1.0)) == pytest.approx(np.mean((s - t) ** 2))

    def softmax(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    T = 3.0
    p, q = softmax(t / T), softmax(s / T)
    expected = np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=1)) * T * T
    assert float(losses.soft_target_loss(s, t, "kl", T)) == pytest.approx(expected, rel=1e-5)
    gold = tf.constant([2, -1])
    ce_first = -np.log(softmax(s)[0, 2])
    assert float(losses.hard_label_loss(s, gold)) == pytest.approx(ce_first, rel=1e-5)
    mixed = losses.distillation_loss(s, t, gold, "kl", T, 0.25)
    assert float(mixed) == pytest.approx(0.25 * ce_first + 0.75 * expected, rel=1e-5)
    assert float(losses.hard_label_loss(s, tf.constant([-1, -1]))) == 0.0


# --- GPT-2 ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory):
    from tests.tiny_models import write_tiny_gpt2

    return write_tiny_gpt2(tmp_path_factory.mktemp("gpt2"))


def test_gpt2_fine_tunes_and_generates_transfer_sentences(tiny_gpt2_dir):
    from rasa_kd.distill.config import GPT2Augmentation
    from rasa_kd.distill.gpt2 import fine_tune_gpt2, load_gpt2, sample_sentences

    texts, intents = intent_pairs()
    lm, tokenizer = load_gpt2(str(tiny_gpt2_dir))
    settings = GPT2Augmentation(model=str(tiny_gpt2_dir), epochs=8, batch_size=8, learning_rate=5e-3, max_length=24, sample_batch_size=16)
    losses = fine_tune_gpt2(lm, tokenizer, texts, settings, seed=0, progress=False)
    assert losses[-1] < 0.7 * losses[0]
    samples = sample_sentences(lm, tokenizer, 20, settings, seed=1)
    assert len(samples) == 20 and all(isinstance(s, str) for s in samples)
    generator = lambda n: sample_sentences(lm, tokenizer, n, settings, seed=n)  # noqa: E731
    transfer = build_transfer_set(texts, intents, [], TransferSetSettings(size=50, augmentation="gpt2"), gpt2_generator=generator)
    assert transfer.stats["by_source"]["gpt2"] > 0
    assert all(s in ("train", "gpt2") for s in transfer.sources)


def test_gpt2_needs_a_local_folder(tmp_path):
    from rasa_kd.distill.gpt2 import load_gpt2
    from rasa_kd.errors import ModelLoadError

    with pytest.raises(ConfigError, match="'transfer_set.gpt2.model' must name a local GPT-2 folder"):
        load_gpt2(None)
    with pytest.raises(ModelLoadError, match="has no config.json"):
        load_gpt2(str(tmp_path))


@pytest.mark.parametrize("training, settings, target", [
    (161, {}, 20000),                         # Spokes: 10x would be 1,610 sentences
    (600, {}, 20000),
    (1999, {}, 20000),
    (4000, {}, 40000),                        # from 2,000 examples up the multiple decides, as before
    (600, {"size_multiplier": 50}, 30000),
    (600, {"min_size": 0}, 6000),
    (600, {"size": 5000}, 5000),              # an explicit size wins over both
])
def test_the_transfer_set_size_has_a_floor_for_small_bots(training, settings, target):
    from rasa_kd.distill.transfer_set import transfer_set_target

    assert transfer_set_target(TransferSetSettings(**settings), training) == target


@pytest.mark.parametrize("training, transfer, dev, epochs", [
    (161, 20000, False, 10),     # a small bot: 200,000 sentence passes
    (600, 20000, False, 10),
    (600, 20000, True, 10),      # a small bot's dev set is too small to stop on: the same budget
    (600, 50000, False, 4),
    (300, 4000, False, 30),      # a transfer set made small on purpose: capped
    (999, 20000, False, 10),
    (1000, 20000, False, 20),    # from 1,000 examples without a dev set: 400,000 sentence passes
    (2280, 22800, False, 18),    # no dev set: every epoch runs, so the budget holds whatever the size
    (20000, 200000, False, 2),
    (1000, 40000, True, 30),     # from 1,000 examples with a dev set: 30 at most, early stopping picks the best
    (67000, 134000, True, 30),
])
def test_the_student_epochs_adapt_to_the_data_size(training, transfer, dev, epochs):
    from rasa_kd.distill.config import StudentTrainingSettings

    assert StudentTrainingSettings().for_data(training, transfer, dev).epochs == epochs


@pytest.mark.parametrize("training, given, embeddings, trained, hidden", [
    (161, {}, "contextual", False, 200),     # a small bot: the teacher's view of every WordPiece, kept as it is
    (1595, {}, "contextual", False, 200),
    (1999, {}, "contextual", False, 200),
    (2000, {}, "teacher", True, 300),        # from 2,000 examples: the teacher's input rows, trained; the thesis's width
    (67000, {}, "teacher", True, 300),
    (161, {"embeddings": "teacher"}, "teacher", False, 200),
    (161, {"embeddings": "random"}, "random", True, 200),   # random rows that stayed random would teach nothing
    (161, {"train_embeddings": True}, "contextual", True, 200),
    (5000, {"embeddings": "contextual", "train_embeddings": False}, "contextual", False, 300),
    (161, {"hidden_units": 300}, "contextual", False, 300),
    (5000, {"hidden_units": 64}, "teacher", True, 64),
])
def test_the_bilstm_shape_and_embeddings_adapt_to_the_data_size(training, given, embeddings, trained, hidden):
    from rasa_kd.models.architectures import BiLSTMSettings

    resolved = BiLSTMSettings(**given).for_examples(training)
    assert (resolved.embeddings, resolved.train_embeddings, resolved.hidden_units) == (embeddings, trained, hidden)
    left = dataclasses.replace(resolved, embeddings=None, train_embeddings=None, hidden_units=None)
    assert left == BiLSTMSettings()


@pytest.mark.parametrize("training, given, embeddings", [
    (161, {}, "contextual"), (1999, {}, "contextual"), (2000, {}, "teacher"), (67000, {}, "teacher"),
    (161, {"embeddings": "teacher"}, "teacher"), (5000, {"embeddings": "contextual"}, "contextual"),
])
def test_the_tinybert_embeddings_adapt_to_the_data_size(training, given, embeddings):
    from rasa_kd.models.architectures import TinyBertSettings

    resolved = TinyBertSettings(**given).for_examples(training)
    assert resolved.embeddings == embeddings
    assert dataclasses.replace(resolved, embeddings=None) == TinyBertSettings()


def test_student_epochs_given_explicitly_are_kept():
    from rasa_kd.distill.config import StudentTrainingSettings

    assert StudentTrainingSettings(epochs=3).for_data(100, 20000, False).epochs == 3
    assert StudentTrainingSettings(epochs=50).for_data(5000, 50000, True).epochs == 50


def test_the_threshold_holdout_is_stratified_deterministic_and_spares_small_intents():
    from rasa_kd.distill.transfer_set import threshold_holdout

    intents = ["a"] * 20 + ["b"] * 10 + ["c"] * 4
    texts = [f"sentence {i}" for i in range(len(intents))]
    chosen = threshold_holdout(texts, intents, 0.1, seed=1)
    assert chosen == threshold_holdout(texts, intents, 0.1, seed=1) and chosen != threshold_holdout(texts, intents, 0.1, seed=2)
    assert [intents[i] for i in chosen] == ["a", "a", "b"]  # 10% of each intent with 5 or more, at least one
    assert threshold_holdout(texts, intents, 0.0, seed=1) == []
