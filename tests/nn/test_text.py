"""The word tokenizer and the text encoder."""
import numpy as np
import pytest

from jaxgen.nn.text import BOS, EOS, PAD, UNK, TextEncoder, Tokenizer, TokenizerError, TruncationWarning, split_words


def test_split_words_lowercases_normalises_and_splits_punctuation():
    assert split_words("Two RED circles, and a Blue square!") == [
        "two", "red", "circles", ",", "and", "a", "blue", "square", "!"]
    # NFKC folds the full-width letters and the ligature; case folding handles non-ASCII scripts too.
    assert split_words("ＲＥＤ ﬁsh Straße ΣΟΦΙΑ") == ["red", "fish", "strasse", "σοφια"]
    assert split_words("猫 と 犬") == ["猫", "と", "犬"]


def test_vocabulary_is_deterministic_and_ordered_by_frequency():
    a = Tokenizer.build(["a red circle", "a blue square", "a red square"], 8)
    b = Tokenizer.build(["a red square", "a blue square", "a red circle"], 8)
    assert a == b
    assert a.words[:4] == ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
    assert a.words[4:] == ["a", "red", "square", "blue", "circle"]  # 3, 2, 2, 1, 1 occurrences


def test_encode_maps_unknown_words_and_pads():
    tok = Tokenizer.build(["a red circle"], 8)
    ids = tok.encode(["A red 🐱 circle", "red"])
    assert ids.dtype == np.int32 and ids.shape == (2, 8)
    a, red, circle = (tok.words.index(w) for w in ("a", "red", "circle"))
    np.testing.assert_array_equal(ids[0], [BOS, a, red, UNK, circle, EOS, PAD, PAD])
    np.testing.assert_array_equal(ids[1], [BOS, red, EOS, PAD, PAD, PAD, PAD, PAD])
    assert tok.decode(ids[0]) == "a red [UNK] circle"


def test_long_text_is_truncated_with_a_warning_and_still_ends_in_eos():
    tok = Tokenizer.build(["one two three four five six"], 5)
    with pytest.warns(TruncationWarning, match="truncated"):
        ids = tok.encode("one two three four five six")
    assert tok.decode(ids[0]) == "one two three" and ids[0, -1] == EOS


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_an_error(text):
    with pytest.raises(TokenizerError, match="empty text"):
        Tokenizer.build(["a"], 4).encode(["fine", text])


def test_save_and_load_round_trip(tmp_path):
    tok = Tokenizer.build(["a red circle", "zwölf ünïcode"], 12)
    tok.save(str(tmp_path / "tok.json"))
    assert Tokenizer.load(str(tmp_path / "tok.json")) == tok
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="not a jaxgen tokenizer"):
        Tokenizer.load(str(tmp_path / "bad.json"))


def test_text_encoder_pools_at_eos_and_ignores_padding():
    import jax

    tok = Tokenizer.build(["a red circle and a blue square"], 10)
    enc = TextEncoder(tok.vocab_size, 10, width=16, depth=2, num_heads=2)
    ids = tok.encode(["a red circle", "a blue square and a red circle"])  # 5 and 9 real tokens
    real = ids != PAD
    assert real.sum(1).tolist() == [5, 9]
    params = enc.init(jax.random.PRNGKey(0), ids)
    apply = jax.jit(enc.apply)
    per_token, pooled = apply(params, ids)
    assert per_token.shape == (2, 10, 16) and pooled.shape == (2, 16)
    eos = np.argmax(ids == EOS, axis=1)
    np.testing.assert_array_equal(pooled, per_token[np.arange(2), eos])
    # Real padding: give the padded positions other inputs (a new [PAD] embedding, and new position
    # embeddings for positions 5..9, which row 0 pads and row 1 partly uses). Row 0's real tokens
    # attend only to real tokens, so their features and the pooled vector must not move at all...
    p = jax.tree.map(np.array, params)
    rng = np.random.default_rng(0)
    p["params"]["token_embedding"]["embedding"][PAD] += rng.normal(size=16)
    p["params"]["position_embedding"][5:] += rng.normal(size=(5, 16))
    poked_tokens, poked_pooled = apply(p, ids)
    np.testing.assert_allclose(poked_tokens[0][real[0]], per_token[0][real[0]], atol=1e-6)
    np.testing.assert_allclose(poked_pooled[0], pooled[0], atol=1e-6)
    # ...while the same new position embeddings under row 1's real tokens 5..8 reach its first
    # five tokens through attention: the perturbation is large enough to show wherever it is
    # attended to, so an encoder that ignored the mask would move row 0 as well.
    moved = np.abs(np.asarray(poked_tokens[1, :5]) - np.asarray(per_token[1, :5])).max()
    assert moved > 1e-2, moved
