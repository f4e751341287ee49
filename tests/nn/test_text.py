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
    enc = TextEncoder(tok.vocab_size, 10, width=16, depth=1, num_heads=2)
    ids = tok.encode(["a red circle", "a blue square and a red circle"])
    params = enc.init(jax.random.PRNGKey(0), ids)
    per_token, pooled = enc.apply(params, ids)
    assert per_token.shape == (2, 10, 16) and pooled.shape == (2, 16)
    eos = np.argmax(ids == EOS, axis=1)
    np.testing.assert_array_equal(pooled, per_token[np.arange(2), eos])
    # Changing a padding id changes nothing before it: padding is masked out of attention.
    poked = ids.copy()
    poked[0, -1] = tok.words.index("blue")  # now a real token at the end, after [EOS]
    np.testing.assert_allclose(enc.apply(params, poked)[1][1], pooled[1], atol=1e-6)  # other row unchanged
    assert not np.allclose(enc.apply(params, poked)[1][0], pooled[0], atol=1e-4)  # real token is attended
