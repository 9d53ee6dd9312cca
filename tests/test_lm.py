"""The NumPy Llama that reads a GGUF file (rasa_kd/distill/lm.py), on a tiny random model written here."""
import types

import numpy as np
import pytest

from rasa_kd.distill.config import LMAugmentation, TransferSetSettings
from rasa_kd.distill.lm import GGUFLlama, continuation_lines, list_prompt, lm_sentences, resolve_gguf
from rasa_kd.distill.transfer_set import build_transfer_set
from rasa_kd.errors import DataError

gguf = pytest.importorskip("gguf")


def byte_level_tokens():
    """GPT-2's printable stand-ins for the 256 bytes (the tokens of a byte-level BPE vocabulary)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for _, code in sorted(zip(printable, codes))]


def write_tiny_llama(path, architecture="llama", seed=0):
    """A 2-layer Llama (hidden 32, 4 query heads sharing 2 key heads) with random weights, as a GGUF file."""
    rng = np.random.default_rng(seed)
    tokens = byte_level_tokens() + ["ĊĊ", "hi", "<|endoftext|>", "<|im_end|>"]
    hidden, ffn, layers, heads, kv_heads = 32, 64, 2, 4, 2
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(layers)
    writer.add_context_length(256)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_merges(["Ċ Ċ", "h i"])
    writer.add_eos_token_id(len(tokens) - 2)

    def add(name, *shape):
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.3).astype(np.float32))

    add("token_embd.weight", len(tokens), hidden)
    add("output_norm.weight", hidden)
    size = hidden // heads
    for i in range(layers):
        for name, shape in [("attn_norm", (hidden,)), ("ffn_norm", (hidden,)), ("attn_q", (hidden, hidden)),
                            ("attn_k", (kv_heads * size, hidden)), ("attn_v", (kv_heads * size, hidden)),
                            ("attn_output", (hidden, hidden)), ("ffn_gate", (ffn, hidden)), ("ffn_up", (ffn, hidden)),
                            ("ffn_down", (hidden, ffn))]:
            add(f"blk.{i}.{name}.weight", *shape)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return GGUFLlama(write_tiny_llama(tmp_path_factory.mktemp("lm") / "tiny.gguf"))


def full_forward(lm, ids):
    """Logits of the last position of one unpadded sequence, computed without reusing a cache."""
    ids = np.asarray([ids])
    cache = [np.zeros((2, 1, lm.kv_heads, ids.shape[1], lm.head_size), dtype=np.float32) for _ in lm.layers]
    return lm.forward(ids, np.arange(ids.shape[1])[None], cache, 0, np.ones((1, ids.shape[1]), dtype=bool))[0]


def test_the_tokenizer_reads_the_files_merges_and_round_trips(tiny_llama):
    ids = tiny_llama.tokenizer.encode("hi there\n\n").ids
    assert ids[0] == tiny_llama.tokenizer.token_to_id("hi") and ids[-1] == tiny_llama.tokenizer.token_to_id("ĊĊ")
    assert tiny_llama.tokenizer.decode(ids) == "hi there\n\n"
    assert tiny_llama.eos_ids == {tiny_llama.tokenizer.token_to_id("<|endoftext|>"), tiny_llama.tokenizer.token_to_id("<|im_end|>")}


def test_cached_batched_greedy_decoding_matches_one_prompt_at_a_time_and_the_full_forward(tiny_llama, monkeypatch):
    prompts = ["hello there, how", "a much longer prompt than the first one, padded on the left"]
    alone = [tiny_llama.generate([p], 12, np.random.default_rng(0), top_k=1, min_p=0.0)[0] for p in prompts]
    steps = []
    forward = tiny_llama.forward
    monkeypatch.setattr(tiny_llama, "forward", lambda *args: steps.append(forward(*args)) or steps[-1])
    together = tiny_llama.generate(prompts, 12, np.random.default_rng(0), top_k=1, min_p=0.0)
    assert together == alone
    # The logits of every step, for the shorter (left-padded) prompt, are those of the whole text so far computed
    # from scratch: the cache, the positions and the padding mask are kept right.
    ids = tiny_llama.tokenizer.encode(prompts[0]).ids
    both = [logits for logits in steps if len(logits) == 2]  # before a finished row leaves the batch
    assert len(both) >= 4
    for logits in both:
        np.testing.assert_allclose(logits[0], full_forward(tiny_llama, ids), rtol=1e-4, atol=1e-4)
        ids.append(int(np.argmax(logits[0])))


def test_sampling_follows_the_seed_and_stops_at_an_empty_line(tiny_llama):
    rng = lambda: np.random.default_rng(7)  # noqa: E731
    first = tiny_llama.generate(["hi", "hi there"], 40, rng(), temperature=2.0)
    assert first == tiny_llama.generate(["hi", "hi there"], 40, rng(), temperature=2.0)
    assert all("\n\n" not in text for text in first)
    assert first != tiny_llama.generate(["hi", "hi there"], 40, np.random.default_rng(8), temperature=2.0)


def test_a_file_of_another_architecture_or_a_missing_one_is_refused(tmp_path):
    with pytest.raises(DataError, match="general.architecture is 'gpt2'"):
        GGUFLlama(write_tiny_llama(tmp_path / "other.gguf", architecture="gpt2"))
    with pytest.raises(DataError, match="missing.gguf is not a file"):
        resolve_gguf(str(tmp_path / "missing.gguf"))


class CannedLM:
    """Stands in for the LM: each prompt's continuation is the next canned text."""

    def __init__(self, texts):
        self.texts, self.prompts = list(texts), []

    def generate(self, prompts, *args, **kwargs):
        self.prompts.extend(prompts)
        return [self.texts.pop(0) if self.texts else "" for _ in prompts]


def test_lm_sentences_keeps_only_new_lines_of_the_allowed_length():
    by_intent = {"greet": ["hello", "hi there", "good morning"], "bye": ["goodbye", "see you"]}
    canned = CannedLM([" Hi There\n- hey you\n2. hey you\n* " + "word " * 31 + "\n- howdy",  # greet's prompts first
                       " cya later\n- Goodbye\n- farewell"])
    settings = types.SimpleNamespace(per_intent=2, batch_size=1, max_new_tokens=8, temperature=1.0, top_p=0.95, max_words=30)
    made = lm_sentences(canned, by_intent, settings, seed=0)
    assert made == ["hey you", "howdy", "cya later", "farewell"]  # by intent, then in the order written
    assert canned.prompts[0].startswith(list_prompt([])[:-1]) and canned.prompts[0].endswith("\n-")
    shown = [line[2:] for line in canned.prompts[0].splitlines()[1:-1]]
    assert sorted(shown) == sorted(by_intent["greet"])  # 6 to 8 examples asked, all 3 shown


def test_continuation_lines_drop_list_marks_and_empty_lines():
    assert continuation_lines(' "book a table"\n\n2) for two\n- \n3. 2 tickets please\n* -5 degrees?') == [
        "book a table", "for two", "2 tickets please", "-5 degrees?"]


def test_the_transfer_set_takes_the_lm_sentences_after_the_training_ones_and_drops_test_sentences():
    settings = TransferSetSettings(size=6, augmentation="none", outliers=0.0, lm=LMAugmentation(per_intent=2))
    transfer = build_transfer_set(["hello", "bye"], ["greet", "bye"], ["hey you"], settings,
                                  lm_sentences=["hey you", "howdy", "farewell"])
    assert list(zip(transfer.texts, transfer.sources)) == [("hello", "train"), ("bye", "train"), ("howdy", "lm"), ("farewell", "lm")]
    assert transfer.stats["dropped_dev_test"] == {"lm": 1}


def test_the_packaged_smollm2_runs_as_llama_cpp_does():
    """The real weights (installed by `make setup`): greedy continuations that llama.cpp 0.3.36 gave for the same
    file and prompts (benchmarks/NOTES.md), so the rotary layout, the tokenizer and the 4-bit dequantisation agree."""
    lm = GGUFLlama(resolve_gguf("smollm2"))
    examples = ["what is rasa", "tell me about rasa open source", "what does rasa do", "explain rasa to me",
                "rasa? what's that", "I want to know what rasa is"]
    assert len(lm.tokenizer.encode(list_prompt(examples)).ids) == 69
    capital, listed = lm.generate(["The capital of France is", list_prompt(examples)], 40, np.random.default_rng(0),
                                  top_k=1, min_p=0.0)
    assert capital.strip() == "Paris."
    assert listed.startswith(" I want to know what rasa is\n- I want to know what rasa is\n-")
