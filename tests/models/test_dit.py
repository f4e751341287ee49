"""The transformer denoiser (DiT): shapes for several patch sizes, adaLN-Zero (every block the identity
and the output exactly zero at initialisation), the 2-D positional embedding, the Denoiser's
conditions (class labels with a null class, text tokens with a learned null token, the
super-resolution inputs) and bfloat16 activations with float32 params and output. Tiny models,
every apply jitted. (The task and the configs: tests/tasks/test_diffusion_dit.py.)"""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.models.diffusion.dit import DiT, DiTBlock, patchify, position_embedding, unpatchify
from jaxgen.models.diffusion.network import drop_condition, null_condition
from jaxgen.nn.unet import sinusoidal_embedding

B, L, D = 3, 5, 12
T = jnp.array([10, 500, 900])
TINY = dict(hidden_size=16, depth=2, num_heads=2)


def _perturbed(params, scale=0.05):
    """Every parameter moved by noise, so that no zero-initialised layer hides a dependency."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    return jax.tree.unflatten(tree, [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


def _model(x, cond, **fields):
    """(jitted apply, params at init) of a tiny DiT for inputs like x [B,H,W,C] and cond."""
    model = DiT(out_channels=x.shape[-1], **{**TINY, **fields})
    params = jax.jit(model.init)(jax.random.PRNGKey(1), x, T[:x.shape[0]], cond)["params"]
    return jax.jit(lambda p, x, t, c: model.apply({"params": p}, x, t, c)), params


@pytest.mark.parametrize("p, shape", [(1, (8, 8, 3)), (2, (8, 8, 3)), (4, (8, 8, 1)), (2, (8, 4, 2))])
def test_output_shape_for_several_patch_sizes(p, shape):
    x = jax.random.normal(jax.random.PRNGKey(0), (2,) + shape)
    apply, params = _model(x, None, patch_size=p)
    assert params["patch_embed"]["kernel"].shape == (p * p * shape[-1], 16)
    assert params["final_proj"]["kernel"].shape == (16, p * p * shape[-1])
    out = apply(_perturbed(params), x, T[:2], None)
    assert out.shape == x.shape and out.dtype == jnp.float32
    tokens = patchify(x, p)
    assert tokens.shape == (2, shape[0] * shape[1] // p ** 2, p * p * shape[-1])
    np.testing.assert_array_equal(unpatchify(tokens, shape[0], shape[1], p), x)
    # Token (i, j) holds the pixels of patch (i, j), row-major.
    np.testing.assert_array_equal(tokens[:, 1].reshape(2, p, p, shape[-1]), x[:, :p, p:2 * p])


def test_a_patch_size_that_does_not_divide_the_image_is_refused():
    x = jnp.zeros((1, 8, 8, 1))
    with pytest.raises(ValueError, match=r"patch_size=3 needs H and W divisible by 3"):
        DiT(out_channels=1, patch_size=3, **TINY).init(jax.random.PRNGKey(0), x, T[:1])


@pytest.mark.parametrize("with_context", [False, True])
def test_each_block_is_the_identity_at_init(with_context):
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    x, c = jax.random.normal(keys[0], (B, 6, 16)), jax.random.normal(keys[1], (B, 16))
    context = jax.random.normal(keys[2], (B, L, D)) if with_context else None
    mask = jnp.ones((B, L), bool) if with_context else None
    block = DiTBlock(num_heads=2)
    params = jax.jit(block.init)(jax.random.PRNGKey(1), x, c, context, mask)["params"]
    assert ("cross_attn" in params) == with_context
    np.testing.assert_array_equal(block.apply({"params": params}, x, c, context, mask), x)
    # Not vacuous: once the zero-initialised modulation moves, the block changes its input.
    moved = dict(params, adaLN_modulation=_perturbed(params["adaLN_modulation"]))
    assert float(jnp.abs(block.apply({"params": moved}, x, c, context, mask) - x).max()) > 1e-3


def test_the_output_is_exactly_zero_at_init_whatever_the_condition():
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(keys[0], (B, 8, 8, 3))
    cond = {"label": jnp.array([0, 3, 10]), "context": jax.random.normal(keys[1], (B, L, D)),
            "context_mask": jnp.ones((B, L), bool), "pooled": jax.random.normal(keys[2], (B, D))}
    apply, params = _model(x, cond, num_classes=10, context_dim=D)
    np.testing.assert_array_equal(apply(params, x, T, cond), np.zeros(x.shape, np.float32))
    # Only the final projection's zeros keep it at zero once the blocks are trained.
    moved = dict(_perturbed(params), final_proj=params["final_proj"])
    np.testing.assert_array_equal(apply(moved, x, T, cond), np.zeros(x.shape, np.float32))
    assert float(jnp.abs(apply(_perturbed(params), x, T, cond)).max()) > 1e-3


def test_position_embedding_is_the_row_and_column_sinusoids():
    emb = np.asarray(position_embedding(3, 4, 10))
    assert emb.shape == (12, 10)
    for r in range(3):
        for c in range(4):
            expected = np.concatenate([sinusoidal_embedding(jnp.array([r]), 5)[0],
                                       sinusoidal_embedding(jnp.array([c]), 5)[0]])
            np.testing.assert_allclose(emb[4 * r + c], expected, rtol=1e-6, atol=1e-6)
    assert len({tuple(np.round(e, 5)) for e in emb}) == 12  # every position its own
    # Same row: same first half; same column: same second half.
    np.testing.assert_array_equal(emb[0, :5], emb[3, :5])
    np.testing.assert_array_equal(emb[1, 5:], emb[9, 5:])


@pytest.fixture(scope="module")
def class_model():
    x = jax.random.normal(jax.random.PRNGKey(0), (B, 8, 8, 1))
    cond = {"label": jnp.array([0, 1, 2])}
    apply, params = _model(x, cond, num_classes=3)
    assert params["label_embedding"]["embedding"].shape == (4, 16)  # 3 classes + the null class
    return apply, _perturbed(params), x


def test_class_labels_change_the_output_and_the_null_class_is_its_own(class_model):
    apply, params, x = class_model
    outs = {k: apply(params, x, T, {"label": jnp.full((B,), k)}) for k in range(4)}  # 3 = the null class
    for a in range(4):
        for b in range(a):
            assert float(jnp.abs(outs[a] - outs[b]).max()) > 1e-3, (a, b)
    cond = {"label": jnp.array([0, 1, 2])}
    null = null_condition(cond, 3)
    np.testing.assert_array_equal(null["label"], [3, 3, 3])
    dropped = apply(params, x, T, drop_condition(cond, jnp.array([True, False, True]), 3))
    np.testing.assert_allclose(dropped[jnp.array([0, 2])], outs[3][jnp.array([0, 2])], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dropped[1], outs[1][1], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def text_model():
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(keys[0], (B, 8, 8, 1))
    num_real = jnp.array([[5], [3], [1]])  # real tokens per row, the rest is padding
    cond = {"context": jax.random.normal(keys[1], (B, L, D)), "context_mask": jnp.arange(L)[None, :] < num_real,
            "pooled": jax.random.normal(keys[2], (B, D))}
    apply, params = _model(x, cond, context_dim=D)
    assert params["null_context"].shape == (1, 1, D) and "cross_attn" in params["block_0"]
    return apply, _perturbed(params), x, cond


def test_text_output_depends_on_the_real_tokens_only(text_model):
    apply, params, x, cond = text_model
    out = apply(params, x, T, cond)
    changed = dict(cond, context=cond["context"].at[:, 3:].set(7.0))  # tokens 3, 4: real only in row 0
    out2 = apply(params, x, T, changed)
    assert float(jnp.abs(out2[0] - out[0]).max()) > 1e-3
    np.testing.assert_allclose(out2[1:], out[1:], rtol=1e-5, atol=1e-6)
    # Rows with real tokens never attend to the null token.
    moved = dict(params, null_context=params["null_context"] + 1.0)
    np.testing.assert_allclose(apply(moved, x, T, cond), out, rtol=1e-5, atol=1e-6)


def test_null_text_ignores_the_embeddings_and_differs_from_real_text(text_model):
    apply, params, x, cond = text_model
    null = null_condition(cond, 0)
    assert not null["context_mask"].any()
    out_null = apply(params, x, T, null)
    noise = jax.tree.map(lambda v: v + 3.0 if v.dtype != bool else v, null)
    np.testing.assert_allclose(apply(params, x, T, dict(noise, pooled=null["pooled"])), out_null,
                               rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(apply(params, x, T, cond) - out_null).max()) > 1e-3
    # The null text attends to the learned null token: moving it moves the null output.
    moved = dict(params, null_context=params["null_context"] + 1.0)
    assert float(jnp.abs(apply(moved, x, T, null) - out_null).max()) > 1e-4
    dropped = apply(params, x, T, drop_condition(cond, jnp.array([True, False, True]), 0))
    np.testing.assert_allclose(dropped[jnp.array([0, 2])], out_null[jnp.array([0, 2])], rtol=1e-5, atol=1e-6)


def test_super_resolution_inputs_reach_the_output():
    """The SR stage's low-res image (up-sampled, concatenated as channels) and its noise level."""
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    x = jax.random.normal(keys[0], (B, 8, 8, 3))
    cond = {"low_res": jax.random.normal(keys[1], (B, 4, 4, 3)), "noise_level": jnp.array([0, 5, 9])}
    apply, params = _model(x, cond, patch_size=2)
    assert params["patch_embed"]["kernel"].shape == (2 * 2 * 6, 16)  # x's 3 channels + low-res's 3
    params = _perturbed(params)
    out = apply(params, x, T, cond)
    for changed in (dict(cond, low_res=cond["low_res"] + 0.5), dict(cond, noise_level=cond["noise_level"] + 3)):
        assert float(jnp.abs(apply(params, x, T, changed) - out).max()) > 1e-3


def test_bfloat16_keeps_params_and_output_float32():
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    x = jax.random.normal(keys[0], (B, 8, 8, 1))
    cond = {"label": jnp.array([0, 1, 3]), "context": jax.random.normal(keys[1], (B, L, D)),
            "context_mask": jnp.ones((B, L), bool)}
    fields = dict(TINY, out_channels=1, num_classes=3, context_dim=D)
    f32, bf16 = DiT(**fields), DiT(**fields, dtype=jnp.bfloat16)
    params = jax.jit(bf16.init)(jax.random.PRNGKey(1), x, T, cond)["params"]
    assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    params = _perturbed(params)
    out = jax.jit(lambda p: bf16.apply({"params": p}, x, T, cond))(params)
    ref = jax.jit(lambda p: f32.apply({"params": p}, x, T, cond))(params)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, ref, rtol=0.05, atol=0.05 * float(jnp.abs(ref).max()))
    assert float(jnp.abs(out - ref).max()) > 0  # it did compute in bfloat16
    # Every matmul over the tokens (patch embedding, attention, MLP, final projection) takes bfloat16
    # operands; only the per-example conditioning path (time MLP, adaLN modulations) stays float32.
    text = jax.jit(lambda p: bf16.apply({"params": p}, x, T, cond)).lower(params).as_text()
    operands = [re.search(r": \((tensor<[^>]*>), (tensor<[^>]*>)\)", line).groups()
                for line in text.splitlines() if "dot_general" in line]
    per_token = [o for o in operands if o[0].count("x") >= 3]  # [B, N, ...] operands
    assert len(per_token) == 2 + 2 * 14 and all(a.endswith("bf16>") and b.endswith("bf16>") for a, b in per_token)
    assert sorted(set(operands) - set(per_token)) == sorted({("tensor<3x16xf32>", f"tensor<16x{n}xf32>")
                                                               for n in (16, 144, 32)})
