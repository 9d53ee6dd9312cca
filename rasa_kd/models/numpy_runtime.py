"""NumPy forward passes of the students, for serving.

A student's arithmetic is tiny (a BiLSTM on a 12-token sentence is ~17 MFLOP), so at batch 1 the
cost of calling TensorFlow (graph dispatch, tensor conversion, a while-loop per LSTM) is most of the
time. These classes copy the trained weights once and compute the same function with a handful of
NumPy calls per token or layer; tests check they agree with the TensorFlow models to 1e-4.
"""
import contextlib
import threading
from typing import ContextManager, Optional

import numpy as np

from rasa_kd.openblas import blas_controller, warn_if_generic_kernels

try:  # exact GELU, as BERT's "gelu"
    from scipy.special import erf as _erf
except ImportError:  # pragma: no cover - scipy comes with Rasa
    _erf = np.vectorize(__import__("math").erf, otypes=[np.float32])


def limit_blas_threads(threads: Optional[int]) -> ContextManager:
    """NumPy's BLAS on at most ``threads`` threads for the duration (None: as the process has it).

    Entering and leaving costs about 6 microseconds. benchmarks/blas_threads.py measured the trade-off
    (BiLSTM student, one sentence): idle machine, all threads p50 0.20 ms vs one thread 0.28 ms; every
    core busy with other processes, all threads p50 1.36 / p99 24.9 ms vs one thread 0.29 / 2.3 ms.
    """
    controller = blas_controller() if threads is not None else None
    if controller is None or not controller.lib_controllers:
        return contextlib.nullcontext()
    return controller.limit(limits=threads)


def _dense(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """x @ weight + bias over the last axis as one 2-D matrix product.

    NumPy runs a 3-D @ 2-D product as one small product per leading index, without BLAS when the
    weight is broadcast; flattening to 2-D makes it one BLAS call (20x faster at batch 256).
    """
    flat = x.reshape(-1, x.shape[-1]) @ weight + bias
    return flat.reshape(*x.shape[:-1], weight.shape[1])


class NumpyBiLSTM:
    """Embeddings -> BiLSTM layers -> ReLU layer -> logits, from a Keras model of ``build_bilstm``."""

    # The first layer's input projection x @ W + b depends on the token alone, so it is kept per token
    # [8H]: a lookup then replaces a third of the arithmetic (for 6 tokens and 300 units, 0.3 ms of
    # products). A table up to TABLE_BYTES is filled at load. A larger one (every student that reads
    # the teacher's 30,522 WordPieces: 293 MB at 300 units) gets the ``eager_rows`` first ids (the
    # trained vocabulary) at load and any other token the first time it is met, its row appended to a
    # compact store. Rows written into a 293 MB array as tokens came cost a page fault each and made the
    # first sight of a token 1-10 ms (benchmarks/NOTES.md, "Batch-1 latency on SNIPS").
    TABLE_BYTES = 256 * 2**20

    def __init__(self, network, eager_rows: Optional[int] = None):
        get = network.get_layer
        tables = [get("embedding").get_weights()[0]]
        if any(layer.name == "embedding_static" for layer in network.layers):
            tables.append(get("embedding_static").get_weights()[0])
        self.embeddings = np.concatenate(tables, axis=1) if len(tables) > 1 else tables[0]
        self.layers = []
        bilstms = [layer for layer in network.layers if layer.name.startswith("bilstm_")]
        for layer in bilstms:
            fw, bw = layer.forward_layer.cell, layer.backward_layer.cell
            units = fw.units
            # sigmoid(x) = 0.5 * tanh(x / 2) + 0.5: halving the input, forget and output gates'
            # weights lets one tanh serve all four gates at each step.
            scale = np.full(4 * units, 0.5, dtype=np.float32)
            scale[2 * units : 3 * units] = 1.0
            kernel = np.concatenate([fw.kernel.numpy() * scale, bw.kernel.numpy() * scale], axis=1)  # [in, 2 * 4H]
            bias = np.concatenate([fw.bias.numpy() * scale, bw.bias.numpy() * scale])  # [2 * 4H]
            recurrent = np.stack([fw.recurrent_kernel.numpy() * scale, bw.recurrent_kernel.numpy() * scale])  # [2, H, 4H]
            # Stored transposed: U.T @ h is 25% faster than h @ U for one sentence (OpenBLAS).
            self.layers.append((kernel, bias, np.ascontiguousarray(recurrent.transpose(0, 2, 1))))
        vocab, width = self.embeddings.shape[0], self.layers[0][0].shape[1]
        self.use_table = True
        self._slot = np.full(vocab, -1, dtype=np.int64)  # row of each token id in _rows, -1 until computed
        self._rows = np.empty((0, width), dtype=np.float32)
        self._filled = 0
        self._lock = threading.Lock()  # one writer; readers take no lock
        row_bytes = width * 4
        eager = vocab if vocab * row_bytes <= self.TABLE_BYTES else min(eager_rows or 0, self.TABLE_BYTES // row_bytes, vocab)
        if eager:
            self._project(np.arange(eager))
        self.dense_w, self.dense_b = get("dense").get_weights()
        self.out_w, self.out_b = get("logits").get_weights()

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.features(ids, mask) @ self.out_w + self.out_b

    def features(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The ReLU layer's output [batch, dense units], which the logits layer reads."""
        keep = None if mask.all() else mask.astype(bool)
        x = None
        for index, (kernel, bias, recurrent) in enumerate(self.layers):
            if index == 0 and self.use_table:
                slots = self._slot[ids]
                if (slots < 0).any():
                    self._project(ids[slots < 0])
                    slots = self._slot[ids]
                projected = self._rows[slots]  # [batch, length, 8H]; _rows read after the slots, see _project
            else:
                inputs = self.embeddings[ids] if index == 0 else x
                projected = _dense(inputs, kernel, bias)
            x = self._bilstm(projected, keep, recurrent, last=index == len(self.layers) - 1)
        return np.maximum(x @ self.dense_w + self.dense_b, 0.0)

    def _project(self, ids: np.ndarray) -> None:
        """Compute and store the first layer's projection of the tokens of ``ids`` not yet stored."""
        with self._lock:
            new = np.unique(ids)
            new = new[self._slot[new] < 0]
            if not len(new):
                return
            start, end = self._filled, self._filled + len(new)
            rows = self._rows
            if end > len(rows):  # doubling: each row copied a bounded number of times
                rows = np.empty((min(max(end, 2 * len(rows), 1024), len(self._slot)), rows.shape[1]), dtype=np.float32)
                rows[:start] = self._rows[:start]
            kernel, bias = self.layers[0][:2]
            embedded = self.embeddings[new]
            if len(new) <= 12:  # a matrix-vector product a row: OpenBLAS's gemm first packs all of the 2.9 MB
                # kernel, 290 us for 2 rows against 26 us a row (300 units, benchmarks/NOTES.md)
                rows[start:end] = np.stack([row @ kernel for row in embedded]) + bias
            else:
                rows[start:end] = embedded @ kernel + bias
            # The store before the slots: a reader that sees a slot also sees a store holding its row.
            self._rows = rows
            self._slot[new] = np.arange(start, end)
            self._filled = end

    @staticmethod
    def _bilstm(projected, keep, recurrent_t, last):
        """One direction after the other, state as columns [H, batch]; direction 1 reads backwards.

        ``projected`` [batch, length, 8H] holds x @ W + b of both directions. A direction's recurrent
        weight (1.4 MB at 300 units) stays in a core's L2 cache through its whole loop; stepping both
        directions together read both (2.9 MB) from L3 at every step when BLAS runs one thread, which made
        the step's product 2x slower there (benchmarks/NOTES.md, "The BiLSTM's directions one after the other").
        """
        batch, length, _ = projected.shape
        units = recurrent_t.shape[2]
        projected = projected.reshape(batch, length, 2, 4 * units).transpose(2, 1, 3, 0)  # [2, length, 4H, batch]
        if keep is not None:
            keep = keep.T[:, None, :]  # [length, 1, batch]
        finals, sequences = [], []
        for direction in (0, 1):
            steps = range(length) if direction == 0 else range(length - 1, -1, -1)
            weight, inputs = recurrent_t[direction], projected[direction]
            # Every step writes into these buffers rather than allocating seven small arrays (1-4% faster at
            # batch 1, benchmarks/NOTES.md). Without padding the new state overwrites the old in place.
            h, c = np.zeros((units, batch), dtype=np.float32), np.zeros((units, batch), dtype=np.float32)
            t, gates = np.empty((4 * units, batch), dtype=np.float32), np.empty((4 * units, batch), dtype=np.float32)
            scratch = np.empty_like(h)
            h_new, c_new = (h, c) if keep is None else (np.empty_like(h), np.empty_like(c))
            i, f, g, o = (slice(k * units, (k + 1) * units) for k in range(4))  # Keras's gate order
            outputs = None if last else np.zeros((length, units, batch), dtype=np.float32)
            for step in steps:
                np.matmul(weight, h, out=t)  # [4H, batch]; h is not written before this
                t += inputs[step]
                np.tanh(t, out=t)
                np.multiply(t, 0.5, out=gates)
                gates += 0.5  # sigmoid of the (pre-halved) i, f, o; the g part is unused
                np.multiply(gates[f], c, out=c_new)
                np.multiply(gates[i], t[g], out=scratch)
                c_new += scratch
                np.tanh(c_new, out=scratch)
                np.multiply(gates[o], scratch, out=h_new)
                if keep is not None:  # padding leaves the state as it was, as Keras masking does
                    np.copyto(h, h_new, where=keep[step])
                    np.copyto(c, c_new, where=keep[step])
                if outputs is not None:
                    outputs[step] = h  # in sentence order for both directions
            finals.append(h)
            sequences.append(outputs)
        if last:
            return np.concatenate(finals, axis=0).T  # [batch, 2H]
        return np.concatenate(sequences, axis=1).transpose(2, 0, 1)  # [batch, length, 2H]


class NumpyBert:
    """A BERT sequence classifier from a Transformers ``TFBertForSequenceClassification``.

    Activations are kept as columns ([hidden, tokens]) and weights stored transposed, so every
    dense layer is ``W.T @ x``: with a dozen tokens OpenBLAS runs that 1.7x faster than ``x @ W``.
    """

    def __init__(self, model):
        config = model.config
        if config.hidden_act not in _GELU:
            raise ValueError(f"the NumPy BERT implements hidden_act {sorted(_GELU)}, not {config.hidden_act!r}")
        self.activation = _GELU[config.hidden_act]
        bert = model.bert
        embeddings = bert.embeddings
        self.eps = config.layer_norm_eps
        self.heads = config.num_attention_heads
        self.word = embeddings.weight.numpy()
        # Every sentence is one segment (type 0): its row is added to each position's once, here.
        self.position_and_type = embeddings.position_embeddings.numpy() + embeddings.token_type_embeddings.numpy()[0]
        self.embedding_norm = _column_norm(embeddings.LayerNorm)
        hidden = self.word.shape[1]
        self.average = np.full((1, hidden), 1.0 / hidden, dtype=np.float32)  # the row every LayerNorm's means use
        # Two constants folded into the weights at load: the attention's 1/sqrt(head size) into the queries'
        # rows, the GELU's 0.5 into the output layer's (the activations here return twice the GELU).
        query_scale = np.ones((3 * hidden, 1), dtype=np.float32)
        query_scale[:hidden] = 1.0 / np.sqrt(hidden // self.heads)
        self.layers = []
        for layer in bert.encoder.layer:
            attention = layer.attention.self_attention
            qkv = [attention.query, attention.key, attention.value]
            out = layer.attention.dense_output
            output_weight, output_bias = _column_dense(layer.bert_output.dense)
            self.layers.append({
                "qkv": (np.ascontiguousarray(np.concatenate([d.kernel.numpy() for d in qkv], axis=1).T * query_scale),
                        np.concatenate([d.bias.numpy() for d in qkv])[:, None] * query_scale),
                "attention_out": _column_dense(out.dense),
                "attention_norm": _column_norm(out.LayerNorm),
                "intermediate": _column_dense(layer.intermediate.dense),
                "output": (output_weight * np.float32(0.5), output_bias),
                "output_norm": _column_norm(layer.bert_output.LayerNorm),
            })
        self.pooler = _column_dense(bert.pooler.dense)
        self.classifier = _column_dense(model.classifier)

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        batch, length = ids.shape
        x = self.word[ids] + self.position_and_type[:length]  # [batch, length, hidden]
        hidden = x.shape[-1]
        x = _norm_columns(np.ascontiguousarray(x.reshape(batch * length, hidden).T), *self.embedding_norm, self.eps, self.average)
        size = hidden // self.heads
        bias = None if mask.all() else ((1.0 - mask.astype(np.float32)) * -10000.0)[:, None, None, :]  # [batch, 1, 1, length]
        for index, p in enumerate(self.layers):
            qkv = _affine(p["qkv"], x)  # [3 * hidden, batch * length], the queries scaled by 1/sqrt(size)
            qkv = qkv.reshape(3, self.heads, size, batch, length)
            keys = qkv[1].transpose(2, 0, 1, 3)  # [batch, heads, size, length]
            values = qkv[2].transpose(2, 0, 3, 1)  # [batch, heads, length, size]
            queries = qkv[0].transpose(2, 0, 3, 1)  # [batch, heads, length, size]
            positions = length
            if index == len(self.layers) - 1:
                # Only [CLS] feeds the pooler: the last layer needs no other position's output.
                queries, positions = queries[:, :, :1], 1
                x = np.ascontiguousarray(x.reshape(hidden, batch, length)[:, :, 0])  # [hidden, batch]
            scores = np.matmul(queries, keys)  # [batch, heads, positions, length]
            if bias is not None:
                scores += bias
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores, out=scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = np.matmul(probs, values)  # [batch, heads, positions, size]
            context = np.ascontiguousarray(context.transpose(1, 3, 0, 2)).reshape(hidden, batch * positions)
            attended = _affine(p["attention_out"], context)
            attended += x
            attended = _norm_columns(attended, *p["attention_norm"], self.eps, self.average)
            inner = self.activation(_affine(p["intermediate"], attended))  # twice the GELU: "output" is halved
            x = _affine(p["output"], inner)
            x += attended
            x = _norm_columns(x, *p["output_norm"], self.eps, self.average)
        pooled = np.tanh(_affine(self.pooler, x))  # [hidden, batch]
        return _affine(self.classifier, pooled).T  # [batch, labels]


def _affine(layer: tuple, x: np.ndarray) -> np.ndarray:
    """W.T @ x + b for a (W.T, b) pair of ``_column_dense``: the bias added in place, no second temporary."""
    out = layer[0] @ x
    out += layer[1]
    return out


_GELU_SCALE = np.float32(np.sqrt(2.0 / np.pi))
_GELU_CUBIC = np.float32(0.044715) * _GELU_SCALE
_INVERSE_SQRT2 = np.float32(1.0 / np.sqrt(2.0))


# The activations return twice the GELU: the 0.5 is folded into the next layer's weights at load.
def _gelu_exact_doubled(x: np.ndarray) -> np.ndarray:
    """2 * GELU with erf (Transformers' "gelu")."""
    inner = _erf(x * _INVERSE_SQRT2)
    inner += 1.0
    inner *= x
    return inner


def _gelu_tanh_doubled(x: np.ndarray) -> np.ndarray:
    """2 * GELU's tanh approximation (Transformers' "gelu_new", the original BERT code's)."""
    inner = x * x  # tanh(s (x + 0.044715 x^3)) = tanh(x (s + 0.044715 s x^2)), s = sqrt(2 / pi)
    inner *= _GELU_CUBIC
    inner += _GELU_SCALE
    inner *= x
    np.tanh(inner, out=inner)
    inner += 1.0
    inner *= x
    return inner


_GELU = {"gelu": _gelu_exact_doubled, "gelu_new": _gelu_tanh_doubled}


def _column_dense(layer) -> tuple:
    """(W.T, b as a column) of a Keras Dense layer."""
    return np.ascontiguousarray(layer.kernel.numpy().T), layer.bias.numpy()[:, None]


def _column_norm(layer) -> tuple:
    return layer.gamma.numpy()[:, None], layer.beta.numpy()[:, None]


def _norm_columns(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float, average: np.ndarray) -> np.ndarray:
    """LayerNorm of each column of ``x`` [hidden, tokens], in place: ``x`` must be a temporary.

    The means are products with the row ``average`` (1/hidden each): at batch 1 a BLAS call on a dozen
    columns costs a third of NumPy's ``mean`` along the first axis, and a tiny-BERT calls this 9 times.
    """
    x -= average @ x
    spread = average @ (x * x)
    spread += eps
    np.sqrt(spread, out=spread)
    x /= spread
    x *= gamma
    x += beta
    return x


def numpy_runtime(kind: str, network, trained_rows: Optional[int] = None):
    """The NumPy forward pass for a student network of ``kind`` (``trained_rows``: ids below it are the
    trained vocabulary, the rows a BiLSTM prepares at load)."""
    warn_if_generic_kernels()
    return NumpyBiLSTM(network, eager_rows=trained_rows) if kind == "bilstm" else NumpyBert(network)
