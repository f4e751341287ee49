"""U-Net (jaxgen/nn/unet.py): shapes per up-sampling mode, conditioning, masking, gradients.

Compiled with XLA's backend optimisation level 0: these tests check numbers, not speed, and it cuts
the compile time of a U-Net's forward + backward about 3x on CPU.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.nn.unet import UNet, sinusoidal_embedding

SMALL = dict(channels=(8, 16), num_res_blocks=1, norm_groups=4, num_heads=2)
FAST = {"xla_backend_optimization_level": 0}


def _compile(fn, *args):
    return jax.jit(fn).lower(*args).compile(compiler_options=FAST)


def _rand(seed, *shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


@pytest.mark.parametrize("mode", ["transpose", "nearest", "bilinear"])
@pytest.mark.parametrize("size,channels", [(8, (8, 16, 16, 32)), (16, (8, 16)),
                                           (32, (8, 16, 16))])
def test_output_shapes_for_each_upsample_mode(mode, size, channels):
    model = UNet(out_channels=5, **{**SMALL, "channels": channels}, upsample=mode,
                 attention_levels=(len(channels) - 1,))
    x, t, ctx = jnp.ones((2, size, size, 3)), jnp.ones((2,)), jnp.ones((2, 4, 6))
    params = jax.eval_shape(model.init, jax.random.key(0), x, t, None, ctx)
    out = jax.eval_shape(model.apply, params, x, t, None, ctx)
    assert out.shape == (2, size, size, 5)
    up = params["params"]["up0"]["kernel"]
    assert up.shape == ((4, 4, 8, 16) if mode == "transpose" else (3, 3, 16, 8))


@pytest.fixture(scope="module")
def conditioned():
    """A small U-Net with time, condition vector and cross-attention at level 1, initialised."""
    x, t = _rand(0, 2, 8, 8, 3), jnp.array([3.0, 700.0])
    cond, ctx = _rand(1, 2, 10), _rand(2, 2, 6, 12)
    mask = jnp.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], bool)
    model = UNet(out_channels=3, **SMALL, attention_levels=(1,), dropout=0.1, upsample="transpose")
    params = _compile(model.init, jax.random.key(0), x, t, cond, ctx, mask)(
        jax.random.key(0), x, t, cond, ctx, mask)
    apply = _compile(model.apply, params, x, t, cond, ctx, mask)
    return model, params, apply, (x, t, cond, ctx, mask)


def test_conditioning_inputs_and_mask(conditioned):
    _, params, apply, (x, t, cond, ctx, mask) = conditioned
    names = set(params["params"])
    assert {"enc1_0_attn", "enc1_0_xattn", "time_mlp_0", "cond_proj"} <= names
    assert "enc0_0_attn" not in names and "dec0_0_attn" not in names
    out = apply(params, x, t, cond, ctx, mask)
    assert out.shape == x.shape and np.all(np.isfinite(out))
    # Tokens behind the mask cannot change the output; real tokens, t and cond do.
    np.testing.assert_array_equal(apply(params, x, t, cond, ctx.at[:, 5].set(9.0), mask), out)
    assert not np.allclose(apply(params, x, t, cond, ctx.at[:, 0].set(9.0), mask), out)
    assert not np.allclose(apply(params, x, t + 100.0, cond, ctx, mask), out)
    assert not np.allclose(apply(params, x, t, 2 * cond, ctx, mask), out)


def test_gradient_flows_to_every_parameter_with_dropout(conditioned):
    model, params, _, (x, t, cond, ctx, mask) = conditioned

    def loss(p):
        out = model.apply(p, x, t, cond, ctx, mask, train=True, rngs={"dropout": jax.random.key(1)})
        return jnp.mean((out - x) ** 2)

    g = _compile(jax.grad(loss), params)(params)
    norms = {jax.tree_util.keystr(k): float(jnp.linalg.norm(v))
             for k, v in jax.tree_util.tree_leaves_with_path(g)}
    assert all(np.isfinite(list(norms.values())))
    assert all(n > 0 for n in norms.values()), [k for k, n in norms.items() if n == 0]


def test_plain_unet_has_no_embedding_parameters():
    x = jnp.ones((2, 8, 8, 3))
    params = jax.eval_shape(UNet(out_channels=3, **SMALL).init, jax.random.key(0), x)
    assert "time_mlp_0" not in params["params"]
    assert "Dense_0" not in params["params"]["enc0_res0"]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="divisible by 4"):
        UNet(3, channels=(8, 8, 8)).init(jax.random.key(0), jnp.ones((1, 6, 6, 3)))
    with pytest.raises(ValueError, match="upsample"):
        UNet(3, channels=(8, 8), upsample="cubic").init(jax.random.key(0), jnp.ones((1, 8, 8, 3)))


def test_sinusoidal_embedding():
    e = sinusoidal_embedding(jnp.array([0.0, 10.0]), 7)
    assert e.shape == (2, 7)
    np.testing.assert_allclose(e[0, :3], 0.0)  # sin(0)
    np.testing.assert_allclose(e[0, 3:6], 1.0)  # cos(0)


def test_cross_attention_levels_put_text_attention_where_they_say():
    x, t, ctx = _rand(0, 2, 8, 8, 3), jnp.array([1, 2]), _rand(1, 2, 5, 6)
    mask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)

    def names(**kw):
        model = UNet(out_channels=3, **SMALL, **kw)
        params = jax.jit(model.init)(jax.random.PRNGKey(0), x, t, None, ctx, mask)["params"]
        return model, params, {k for k in params if k.endswith("attn")}

    # Default (None): cross-attention wherever self-attention is, as before the option existed.
    _, _, default = names(attention_levels=(1,))
    assert default == {"enc1_0_attn", "enc1_0_xattn"}
    # Text at both levels, in encoder and decoder; self-attention only at the bottleneck.
    _, _, both = names(attention_levels=(1,), cross_attention_levels=(0, 1))
    assert both == {"enc0_0_xattn", "dec0_0_xattn", "enc1_0_attn", "enc1_0_xattn"}
    # Cross-attention only at the full-resolution level: the output depends on the text there.
    model, params, only = names(attention_levels=(), cross_attention_levels=(0,))
    assert only == {"enc0_0_xattn", "dec0_0_xattn"}
    apply = jax.jit(lambda c: model.apply({"params": params}, x, t, None, c, mask))
    assert float(jnp.abs(apply(ctx) - apply(ctx * -1.0)).max()) > 1e-4
