"""The NumPy serving path computes what the TensorFlow students compute."""
import numpy as np
import pytest

from rasa_kd.models import bert
from rasa_kd.models.architectures import BiLSTMSettings, TinyBertSettings
from rasa_kd.models.numpy_runtime import NumpyBert, NumpyBiLSTM
from rasa_kd.models.networks import build_bilstm, build_tinybert, student_forward
from rasa_kd.models.student import StudentVocab


def batch_with_padding(vocab_size, seed=0):
    rng = np.random.default_rng(seed)
    sequences = [rng.integers(2, vocab_size, size=n) for n in (7, 3, 12, 1, 5)]
    return bert.pad(sequences, 0)


@pytest.mark.parametrize("layers, multichannel", [(1, False), (2, True)])
def test_numpy_bilstm_matches_keras(layers, multichannel, monkeypatch):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(1)
    settings = BiLSTMSettings(layers=layers, hidden_units=8, dense_units=6, multichannel=multichannel)
    table = np.random.default_rng(2).normal(size=(30, 5)).astype(np.float32)
    network = build_bilstm(settings, 30, 4, table, 5)
    ids, mask = batch_with_padding(30)
    expected = student_forward("bilstm", network)(ids, mask).numpy()
    runtime = NumpyBiLSTM(network)
    assert (runtime._slot >= 0).all()  # a small table is filled at load
    np.testing.assert_allclose(runtime(ids, mask), expected, atol=1e-5)
    relu = tf.keras.Model(network.input, network.get_layer("dense").output)(ids, training=False).numpy()
    np.testing.assert_allclose(runtime.features(ids, mask), relu, atol=1e-5)  # what benchmarks/oos_distance.py reads

    def stored(runtime):
        return set(np.flatnonzero(runtime._slot >= 0))

    monkeypatch.setattr(NumpyBiLSTM, "TABLE_BYTES", 0)
    runtime = NumpyBiLSTM(network, eager_rows=10)
    # A large table fills token by token: first one sentence, then the batch.
    assert not stored(runtime)
    np.testing.assert_allclose(runtime(ids[:1, :7], mask[:1, :7]), expected[:1], atol=1e-5)  # no padding: fast path
    assert stored(runtime) == set(ids[0, :7])
    np.testing.assert_allclose(runtime(ids, mask), expected, atol=1e-5)
    assert stored(runtime) == set(ids.ravel())
    assert runtime._filled == len(set(ids.ravel()))  # compact: one row per token met
    np.testing.assert_allclose(runtime(ids, mask), expected, atol=1e-5)  # all from the table
    runtime = NumpyBiLSTM(network)  # the whole batch's tokens at once: one matrix product, not a row each
    assert len(set(ids.ravel())) > 12
    np.testing.assert_allclose(runtime(ids, mask), expected, atol=1e-5)
    runtime.use_table = False  # without the table: every projection computed
    np.testing.assert_allclose(runtime(ids, mask), expected, atol=1e-5)
    # Room for 12 rows: the trained rows asked for (10) at load, the rest when met.
    monkeypatch.setattr(NumpyBiLSTM, "TABLE_BYTES", 12 * runtime._rows.shape[1] * 4)
    runtime = NumpyBiLSTM(network, eager_rows=10)
    assert stored(runtime) == set(range(10))
    np.testing.assert_allclose(runtime(ids, mask), expected, atol=1e-5)
    assert stored(runtime) == set(range(10)) | set(ids.ravel())

@pytest.mark.parametrize("activation", ["gelu_new", "gelu"])
def test_numpy_bert_matches_transformers(tiny_bert_dir, activation):
    from rasa_kd.models.bert import load_tokenizer

    tokenizer = load_tokenizer(tiny_bert_dir)
    ids_lists = bert.encode(tokenizer, ["hello friend", "i want a pizza with cheese please", "bye"], 16)
    vocab = StudentVocab.from_teacher_ids(ids_lists, tokenizer)
    settings = TinyBertSettings(layers=2, hidden_size=12, heads=3, intermediate_size=20, max_seq_length=16,
                               activation=activation)
    network = build_tinybert(settings, vocab, ["a", "b", "c", "d"], teacher=None, seed=3)
    ids, mask = bert.pad(vocab.map(ids_lists), 0)
    assert network.config.hidden_act == activation
    expected = student_forward("tinybert", network)(ids, mask).numpy()
    np.testing.assert_allclose(NumpyBert(network)(ids, mask), expected, atol=1e-4)
    np.testing.assert_allclose(NumpyBert(network)(ids[2:], mask[2:]), expected[2:], atol=1e-4)
    assert mask[1].all()  # the longest sentence: the path without an attention bias
    np.testing.assert_allclose(NumpyBert(network)(ids[1:2], mask[1:2]), expected[1:2], atol=1e-4)


def test_numpy_bert_refuses_an_activation_it_does_not_implement(tiny_bert_dir):
    from rasa_kd.models.bert import load_tokenizer

    vocab = StudentVocab.from_teacher_ids(bert.encode(load_tokenizer(tiny_bert_dir), ["hello"], 8), load_tokenizer(tiny_bert_dir))
    network = build_tinybert(TinyBertSettings(layers=1, hidden_size=8, heads=2, intermediate_size=8, max_seq_length=8), vocab, ["a", "b"])
    network.config.hidden_act = "relu"
    with pytest.raises(ValueError, match="relu"):
        NumpyBert(network)


def test_limit_blas_threads_limits_numpy_blas_and_restores_it():
    from threadpoolctl import threadpool_info

    from rasa_kd.models.numpy_runtime import limit_blas_threads

    def blas_threads():
        return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]

    before = blas_threads()
    assert before, "NumPy should link a BLAS that threadpoolctl sees"
    with limit_blas_threads(1):
        assert blas_threads() == [1] * len(before)
    assert blas_threads() == before
    with limit_blas_threads(None):  # no limit: the process's setting stays
        assert blas_threads() == before
