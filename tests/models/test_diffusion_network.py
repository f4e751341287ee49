"""The denoiser's conditioning: class labels with a null class, and text-token embeddings through
cross-attention with a learned null token (random embeddings stand in for a text encoder)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.models.diffusion import samplers, schedules
from jaxgen.models.diffusion.network import Denoiser, drop_condition, null_condition

B, L, D = 3, 5, 12


@pytest.fixture(scope="module")
def text_model():
    model = Denoiser(out_channels=1, channels=(8, 16), num_res_blocks=1, attention_levels=(1,), num_heads=2,
                     norm_groups=4, context_dim=D)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(keys[0], (B, 8, 8, 1))
    num_real = jnp.array([[5], [3], [1]])  # real tokens per row, the rest is padding
    cond = {"context": jax.random.normal(keys[1], (B, L, D)), "context_mask": jnp.arange(L)[None, :] < num_real,
            "pooled": jax.random.normal(keys[2], (B, D))}
    params = jax.jit(model.init)(jax.random.PRNGKey(1), x, jnp.zeros((B,), jnp.int32), cond)["params"]
    # Perturb every parameter so that no zero-initialised output layer hides a dependency.
    params = jax.tree.map(lambda p: p + 0.01 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
    # Jitted: run op by op, every U-Net primitive would compile on its own (half a minute here).
    apply = jax.jit(lambda p, x, t, c: model.apply({"params": p}, x, t, c))
    return apply, params, x, cond


def test_output_depends_on_the_real_tokens_only(text_model):
    apply, params, x, cond = text_model
    t = jnp.array([10, 500, 900])
    out = apply(params, x, t, cond)
    changed = dict(cond, context=cond["context"].at[:, 3:].set(7.0))  # tokens 3, 4: real only in row 0
    out2 = apply(params, x, t, changed)
    assert float(jnp.abs(out2[0] - out[0]).max()) > 1e-3
    np.testing.assert_allclose(out2[1:], out[1:], rtol=1e-5, atol=1e-6)


def test_null_text_ignores_the_embeddings_and_differs_from_real_text(text_model):
    apply, params, x, cond = text_model
    t = jnp.array([10, 500, 900])
    null = null_condition(cond, 0)
    out_null = apply(params, x, t, null)
    noise = jax.tree.map(lambda v: v + 3.0 if v.dtype != bool else v, null)
    np.testing.assert_allclose(apply(params, x, t, dict(noise, pooled=null["pooled"])),
                               out_null, rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(apply(params, x, t, cond) - out_null).max()) > 1e-3
    dropped = drop_condition(cond, jnp.array([True, False, True]), 0)
    out_dropped = apply(params, x, t, dropped)
    np.testing.assert_allclose(out_dropped[jnp.array([0, 2])], out_null[jnp.array([0, 2])], rtol=1e-5, atol=1e-6)


def test_text_guidance_at_one_is_the_conditional_chain(text_model):
    apply, params, x, cond = text_model
    sched = schedules.respace(schedules.cosine(100), 5)
    # Clipped x0 estimates, as every config samples: unclipped, this untrained model's chain reaches
    # |x| ~ 4e3, and float32 rounding of such values (~4e-4, the two chains batch the network
    # differently) swamps any per-element tolerance on the entries near zero.
    run = lambda **kw: samplers.sample(apply, params, sched, x.shape, jax.random.PRNGKey(3), cond,  # noqa: E731
                                       thresholding="static", **kw)[0]
    np.testing.assert_allclose(run(null_cond=null_condition(cond, 0), guidance=1.0), run(), rtol=1e-4, atol=1e-5)


def test_a_trainable_text_transformer_reads_the_real_tokens_only():
    """model.text_layers: a TokenTransformer over the frozen tokens mixes them with each other, so a
    padding token leaking into a real one would change every row; masked, it changes none."""
    model = Denoiser(out_channels=1, channels=(8, 16), num_res_blocks=1, attention_levels=(1,), num_heads=2,
                     norm_groups=4, context_dim=D, text_layers=2, text_width=8)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(keys[0], (B, 8, 8, 1))
    cond = {"context": jax.random.normal(keys[1], (B, L, D)),
            "context_mask": jnp.arange(L)[None, :] < jnp.array([[5], [3], [1]]),
            "pooled": jax.random.normal(keys[2], (B, D))}
    params = model.init(jax.random.PRNGKey(1), x, jnp.zeros((B,), jnp.int32), cond)["params"]
    assert set(params["text_transformer"]) == {"proj_in", "block_0", "block_1", "norm_final"}
    assert params["text_transformer"]["proj_in"]["kernel"].shape == (D, 8)
    assert params["null_context"].shape == (1, 1, 8)  # the null token lives at the transformer's width
    apply = jax.jit(lambda c: model.apply({"params": params}, x, jnp.array([10, 500, 900]), c))
    out = apply(cond)
    padded = apply(dict(cond, context=cond["context"].at[:, 3:].set(7.0)))  # real only in row 0
    assert float(jnp.abs(padded[0] - out[0]).max()) > 1e-3
    np.testing.assert_allclose(padded[1:], out[1:], rtol=1e-5, atol=1e-6)
    first = apply(dict(cond, context=cond["context"].at[2, 0].set(7.0)))  # row 2's one real token
    assert float(jnp.abs(first[2] - out[2]).max()) > 1e-3
    np.testing.assert_allclose(first[:2], out[:2], rtol=1e-5, atol=1e-6)


def test_class_labels_with_a_null_class():
    model = Denoiser(out_channels=1, channels=(8, 16), num_res_blocks=1, norm_groups=4, num_classes=10)
    x = jnp.ones((4, 8, 8, 1))
    labels = jnp.array([0, 3, 7, 9])
    params = jax.jit(model.init)(jax.random.PRNGKey(0), x, jnp.zeros((4,), jnp.int32), {"label": labels})["params"]
    assert params["label_embedding"]["embedding"].shape[0] == 11  # ten classes and the null class
    null = null_condition({"label": labels}, 10)
    np.testing.assert_array_equal(null["label"], [10, 10, 10, 10])
    out = jax.jit(model.apply)({"params": params}, x, jnp.full((4,), 100), {"label": labels})
    assert float(jnp.abs(out[0] - out[1]).max()) > 1e-4  # same x and t, different labels
