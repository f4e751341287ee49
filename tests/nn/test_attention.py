"""Multi-head self- and cross-attention (jaxgen/nn/attention.py)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax import linen as nn

from jaxgen.nn.attention import (GroupNorm, MultiHeadAttention, SpatialAttention,
                                 dot_product_attention)

jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _r(seed, *shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def test_dot_product_attention_matches_naive_softmax():
    q, k, v = _r(0, 2, 5, 3, 4), _r(1, 2, 7, 3, 4), _r(2, 2, 7, 3, 4)
    out = jit(dot_product_attention)(q, k, v)
    for b in range(2):
        for h in range(3):
            logits = np.asarray(q[b, :, h]) @ np.asarray(k[b, :, h]).T / 2.0
            p = np.exp(logits - logits.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            np.testing.assert_allclose(out[b, :, h], p @ np.asarray(v[b, :, h]), atol=1e-5)


def test_mask_removes_keys_and_fully_masked_rows_are_zero():
    q, k, v = _r(3, 2, 4, 2, 8), _r(4, 2, 6, 2, 8), _r(5, 2, 6, 2, 8)
    mask = jnp.array([[1, 1, 1, 0, 0, 0], [0] * 6], bool)
    out, ref = jit(lambda q, k, v: (dot_product_attention(q, k, v, mask), dot_product_attention(
        q[:1], k[:1, :3], v[:1, :3])))(q, k, v)
    np.testing.assert_allclose(out[0], ref[0], atol=1e-6)
    np.testing.assert_array_equal(out[1], 0.0)


def test_self_attention_is_permutation_equivariant():
    x = _r(6, 2, 9, 16)
    mha = MultiHeadAttention(num_heads=4)
    params = jit(mha.init)(jax.random.key(0), x)
    perm = np.random.default_rng(0).permutation(9)
    a, b = jit(lambda p, x: (mha.apply(p, x[:, perm]), mha.apply(p, x)[:, perm]))(params, x)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_spatial_cross_attention_mask_really_masks():
    x, ctx = _r(7, 2, 4, 4, 16), _r(8, 2, 5, 12)
    mask = jnp.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], bool)
    block = SpatialAttention(num_heads=2, norm_groups=4)
    params = jit(block.init)(jax.random.key(1), x, ctx, mask)
    apply = jit(block.apply)
    out = apply(params, x, ctx, mask)
    assert out.shape == x.shape
    changed = ctx.at[:, 4].set(100.0).at[0, 2:].set(-50.0)  # only masked tokens change
    np.testing.assert_array_equal(apply(params, x, changed, mask), out)
    assert not np.allclose(apply(params, x, ctx.at[:, 0].set(3.0), mask), out)  # real tokens do


def test_spatial_self_attention_is_residual():
    x = _r(9, 1, 4, 4, 8)
    block = SpatialAttention(num_heads=2, norm_groups=4)
    params = jit(block.init)(jax.random.key(2), x)
    zero_out = jax.tree_util.tree_map_with_path(
        lambda path, a: jnp.zeros_like(a) if "out" in jax.tree_util.keystr(path) else a, params)
    np.testing.assert_allclose(jit(block.apply)(zero_out, x), x)
    with pytest.raises(ValueError, match="context_mask"):
        block.apply(params, x, None, jnp.ones((1, 3), bool))


@pytest.mark.parametrize("shape,groups", [((2, 5, 6, 12), 4), ((3, 7, 16), 8)])
def test_group_norm_matches_flax(shape, groups):
    x = _r(10, *shape) * 3.0 + 1.0
    ours, ref = GroupNorm(groups), nn.GroupNorm(num_groups=groups)
    params = jax.tree.map(lambda a: a + _r(11, *a.shape) * 0.1, jit(ref.init)(jax.random.key(0), x))
    shapes = jax.tree.map(jnp.shape, ours.init(jax.random.key(0), x))
    assert jax.tree.map(jnp.shape, params) == shapes
    np.testing.assert_allclose(jit(ours.apply)(params, x), jit(ref.apply)(params, x), atol=2e-5)
    with pytest.raises(ValueError, match="groups"):
        GroupNorm(5).init(jax.random.key(0), x)
