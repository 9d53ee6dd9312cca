"""NumPy forward passes of the students, for serving.

A student's arithmetic is tiny (a BiLSTM on a 12-token sentence is ~17 MFLOP), so at batch 1 the
cost of calling TensorFlow (graph dispatch, tensor conversion, a while-loop per LSTM) is most of the
time. These classes copy the trained weights once and compute the same function with a handful of
NumPy calls per token or layer; tests check they agree with the TensorFlow models to 1e-4.
"""
from typing import List, Tuple

import numpy as np

try:  # exact GELU, as BERT's "gelu"
    from scipy.special import erf as _erf
except ImportError:  # pragma: no cover - scipy comes with Rasa
    _erf = np.vectorize(__import__("math").erf, otypes=[np.float32])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # = 1 / (1 + exp(-x)), without overflow


def _dense(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """x @ weight + bias over the last axis as one 2-D matrix product.

    NumPy runs a 3-D @ 2-D product as one small product per leading index, without BLAS when the
    weight is broadcast; flattening to 2-D makes it one BLAS call (20x faster at batch 256).
    """
    flat = x.reshape(-1, x.shape[-1]) @ weight + bias
    return flat.reshape(*x.shape[:-1], weight.shape[1])


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = np.mean(centred * centred, axis=-1, keepdims=True)
    return centred / np.sqrt(variance + eps) * gamma + beta


class NumpyBiLSTM:
    """Embeddings -> BiLSTM layers -> ReLU layer -> logits, from a Keras model of ``build_bilstm``."""

    # The first layer's input projection of every vocabulary entry is precomputed when the table
    # stays under this size: a lookup then replaces a third of the arithmetic.
    TABLE_BYTES = 64 * 2**20

    def __init__(self, network):
        get = network.get_layer
        tables = [get("embedding").get_weights()[0]]
        if any(layer.name == "embedding_static" for layer in network.layers):
            tables.append(get("embedding_static").get_weights()[0])
        self.embeddings = np.concatenate(tables, axis=1) if len(tables) > 1 else tables[0]
        self.layers = []
        bilstms = [layer for layer in network.layers if layer.name.startswith("bilstm_")]
        for layer in bilstms:
            fw, bw = layer.forward_layer.cell, layer.backward_layer.cell
            kernel = np.concatenate([fw.kernel.numpy(), bw.kernel.numpy()], axis=1)  # [in, 2 * 4H]
            bias = np.concatenate([fw.bias.numpy(), bw.bias.numpy()])  # [2 * 4H]
            recurrent = np.stack([fw.recurrent_kernel.numpy(), bw.recurrent_kernel.numpy()])  # [2, H, 4H]
            self.layers.append((kernel, bias, recurrent))
        self.first_projection = None
        vocab, width = self.embeddings.shape[0], self.layers[0][0].shape[1]
        if vocab * width * 4 <= self.TABLE_BYTES:
            self.first_projection = self.embeddings @ self.layers[0][0] + self.layers[0][1]  # [vocab, 8H]
        self.dense_w, self.dense_b = get("dense").get_weights()
        self.out_w, self.out_b = get("logits").get_weights()

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        keep = None if mask.all() else mask.astype(bool)
        x = None
        for index, (kernel, bias, recurrent) in enumerate(self.layers):
            if index == 0 and self.first_projection is not None:
                projected = self.first_projection[ids]  # [batch, length, 8H]
            else:
                inputs = self.embeddings[ids] if index == 0 else x
                projected = _dense(inputs, kernel, bias)
            x = self._bilstm(projected, keep, recurrent, last=index == len(self.layers) - 1)
        hidden = np.maximum(x @ self.dense_w + self.dense_b, 0.0)
        return hidden @ self.out_w + self.out_b

    @staticmethod
    def _bilstm(projected, keep, recurrent, last):
        """Both directions at once: state [2, batch, H]; direction 1 reads the sentence backwards.

        ``projected`` [batch, length, 8H] holds x @ W + b of both directions.
        """
        batch, length, _ = projected.shape
        units = recurrent.shape[1]
        projected = projected.reshape(batch, length, 2, 4 * units).transpose(2, 0, 1, 3)  # [2, batch, length, 4H]
        projected = np.stack([projected[0], projected[1, :, ::-1]])  # direction 1 in its reading order
        if keep is not None:
            keep = np.stack([keep, keep[:, ::-1]])[..., None]  # [2, batch, length, 1]
        h = np.zeros((2, batch, units), dtype=np.float32)
        c = np.zeros_like(h)
        outputs = None if last else np.zeros((2, batch, length, units), dtype=np.float32)
        for step in range(length):
            z = projected[:, :, step] + np.matmul(h, recurrent)  # [2, batch, 4H]
            gates = _sigmoid(z)  # Keras order: input, forget, cell, output
            c_new = gates[..., units : 2 * units] * c + gates[..., :units] * np.tanh(z[..., 2 * units : 3 * units])
            h_new = gates[..., 3 * units :] * np.tanh(c_new)
            if keep is None:
                h, c = h_new, c_new
            else:  # padding leaves the state as it was, as Keras masking does
                h, c = np.where(keep[:, :, step], h_new, h), np.where(keep[:, :, step], c_new, c)
            if outputs is not None:
                outputs[:, :, step] = h
        if last:
            return np.concatenate([h[0], h[1]], axis=-1)  # [batch, 2H]
        return np.concatenate([outputs[0], outputs[1][:, ::-1]], axis=-1)  # [batch, length, 2H]


class NumpyBert:
    """A BERT sequence classifier from a Transformers ``TFBertForSequenceClassification``."""

    def __init__(self, model):
        config = model.config
        if config.hidden_act != "gelu":
            raise ValueError(f"the NumPy BERT implements hidden_act 'gelu', not {config.hidden_act!r}")
        bert = model.bert
        embeddings = bert.embeddings
        self.eps = config.layer_norm_eps
        self.heads = config.num_attention_heads
        self.word = embeddings.weight.numpy()
        self.position = embeddings.position_embeddings.numpy()
        self.token_type = embeddings.token_type_embeddings.numpy()[0]
        self.embedding_norm = [w.numpy() for w in (embeddings.LayerNorm.gamma, embeddings.LayerNorm.beta)]
        self.layers = []
        for layer in bert.encoder.layer:
            attention = layer.attention.self_attention
            qkv_w = np.concatenate([attention.query.kernel.numpy(), attention.key.kernel.numpy(), attention.value.kernel.numpy()], axis=1)
            qkv_b = np.concatenate([attention.query.bias.numpy(), attention.key.bias.numpy(), attention.value.bias.numpy()])
            out = layer.attention.dense_output
            self.layers.append({
                "qkv": (qkv_w, qkv_b),
                "attention_out": (out.dense.kernel.numpy(), out.dense.bias.numpy()),
                "attention_norm": (out.LayerNorm.gamma.numpy(), out.LayerNorm.beta.numpy()),
                "intermediate": (layer.intermediate.dense.kernel.numpy(), layer.intermediate.dense.bias.numpy()),
                "output": (layer.bert_output.dense.kernel.numpy(), layer.bert_output.dense.bias.numpy()),
                "output_norm": (layer.bert_output.LayerNorm.gamma.numpy(), layer.bert_output.LayerNorm.beta.numpy()),
            })
        self.pooler = (bert.pooler.dense.kernel.numpy(), bert.pooler.dense.bias.numpy())
        self.classifier = (model.classifier.kernel.numpy(), model.classifier.bias.numpy())

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        batch, length = ids.shape
        x = self.word[ids] + self.position[:length] + self.token_type
        x = _layer_norm(x, *self.embedding_norm, self.eps)
        hidden = x.shape[-1]
        size = hidden // self.heads
        bias = None if mask.all() else ((1.0 - mask.astype(np.float32)) * -10000.0)[:, None, None, :]
        for p in self.layers:
            qkv = _dense(x, *p["qkv"])  # [batch, length, 3 * hidden]
            qkv = np.ascontiguousarray(qkv.reshape(batch, length, 3, self.heads, size).transpose(2, 0, 3, 1, 4))
            scores = np.matmul(qkv[0], qkv[1].transpose(0, 1, 3, 2)) * (1.0 / np.sqrt(size))  # [batch, heads, length, length]
            if bias is not None:
                scores = scores + bias
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            probs = scores / scores.sum(axis=-1, keepdims=True)
            context = np.matmul(probs, qkv[2]).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
            attended = _layer_norm(_dense(context, *p["attention_out"]) + x, *p["attention_norm"], self.eps)
            inner = _dense(attended, *p["intermediate"])
            inner = 0.5 * inner * (1.0 + _erf(inner * (1.0 / np.sqrt(2.0))))
            x = _layer_norm(_dense(inner, *p["output"]) + attended, *p["output_norm"], self.eps)
        pooled = np.tanh(x[:, 0] @ self.pooler[0] + self.pooler[1])
        return pooled @ self.classifier[0] + self.classifier[1]


def numpy_runtime(kind: str, network):
    """The NumPy forward pass for a student network of ``kind``."""
    return NumpyBiLSTM(network) if kind == "bilstm" else NumpyBert(network)
