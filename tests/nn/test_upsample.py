"""Parameter-free up-sampling and up-sample + conv layers (jaxgen/nn/upsample.py)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.nn import conv as C

jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _x(seed=0, shape=(2, 5, 7, 3)):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


@pytest.mark.parametrize("method", C.UPSAMPLE_METHODS)
@pytest.mark.parametrize("factor", [2, 3, (2, 3)])
def test_upsample_matches_jax_image_resize(method, factor):
    x = _x()
    fh, fw = (factor, factor) if isinstance(factor, int) else factor
    ref, out, layer = jit(lambda x: (jax.image.resize(x, (2, 5 * fh, 7 * fw, 3), method),
                                     C.upsample(x, factor, method),
                                     C.Upsample(factor, method).apply({}, x)))(x)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    np.testing.assert_allclose(layer, out)


@pytest.mark.parametrize("method,factor", [("nearest", 2), ("nearest", 3), ("bilinear", 2),
                                           ("bilinear", 3)])
def test_upsample_matches_torch_interpolate(method, factor):
    torch = pytest.importorskip("torch")
    x = _x(1)
    kw = {} if method == "nearest" else {"align_corners": False}
    ref = torch.nn.functional.interpolate(torch.from_numpy(np.array(x)).permute(0, 3, 1, 2),
                                          scale_factor=factor, mode=method, **kw)
    np.testing.assert_allclose(jit(C.upsample, static_argnums=(1, 2))(x, factor, method),
                               ref.permute(0, 2, 3, 1).numpy(), atol=1e-5)


@pytest.mark.parametrize("k,f,pad", [(3, 2, "SAME"), (1, 2, "SAME"), (2, 2, "VALID"),
                                     (3, 3, "SAME"), (5, 2, "VALID"), (3, 2, 1)])
def test_fused_nearest_conv_equals_upsample_then_conv(k, f, pad):
    x = _x(2)
    w = jnp.asarray(np.random.default_rng(3).standard_normal((k, k, 3, 4)), jnp.float32)
    ref, out = jit(lambda x, w: (C.conv2d(C.upsample(x, f, "nearest"), w, 1, pad),
                                 C.upsample_conv_nearest(x, w, f, pad)))(x, w)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("method", C.UPSAMPLE_METHODS)
def test_upsample_conv_layer_matches_torch(method):
    torch = pytest.importorskip("torch")
    x = _x(4, (2, 4, 6, 3))
    layer = C.UpsampleConv(5, 2, method)
    params = jax.tree.map(lambda a: a + 0.05, jit(layer.init)(jax.random.key(0), x))
    out = jit(layer.apply)(params, x)
    unfused = jit(C.UpsampleConv(5, 2, method, fused=False).apply)(params, x)
    np.testing.assert_allclose(out, unfused, atol=2e-5)
    w = torch.from_numpy(np.asarray(params["params"]["kernel"]).transpose(3, 2, 0, 1).copy())
    b = torch.from_numpy(np.array(params["params"]["bias"]))
    kw = {} if method == "nearest" else {"align_corners": False}
    up = torch.nn.functional.interpolate(torch.from_numpy(np.array(x)).permute(0, 3, 1, 2),
                                         scale_factor=2, mode=method, **kw)
    ref = torch.nn.functional.conv2d(up, w, b, padding=1).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(out, ref, atol=2e-5)


def test_upsample_rejects_unknown_method():
    with pytest.raises(ValueError, match="nearest"):
        C.upsample(jnp.ones((1, 2, 2, 1)), 2, "bicubic")
