"""Convolution, its CPU gradient, and the four forms of transposed convolution (jaxgen/nn/conv*.py).

Everything is reached through jaxgen.nn.conv, the family's import path, as user code does.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

import jaxgen.nn
from jaxgen.nn import conv as C
from jaxgen.nn import conv_grad

ATOL = 1e-5
# These tests check numbers, not speed: XLA's backend optimisation level 0 compiles ~3x faster.
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _rand(rng, *shape):
    return jnp.asarray(rng.standard_normal(shape), jnp.float32)


@functools.partial(jit, static_argnames=("stride", "padding", "dilation", "size"))
def _all_forms(y, w, stride, padding, dilation, size):
    return {m: C.conv_transpose(y, w, stride, padding, dilation, size, method=m)
            for m in C.TRANSPOSE_METHODS}


def test_lecture_case_5x5_to_2x2_and_back():
    x, w = jnp.ones((1, 5, 5, 1)), jnp.ones((3, 3, 1, 1))
    y = C.conv2d(x, w, 2, "VALID")
    assert y.shape == (1, 2, 2, 1) and np.all(np.asarray(y) == 9.0)
    # A^T 1 counts, per input pixel, the windows that cover it: rows/cols 0,1 | 2 | 3,4 -> 1|2|1.
    cover = np.outer([1, 1, 2, 1, 1], [1, 1, 2, 1, 1]).astype(np.float32)
    outs = _all_forms(jnp.ones((1, 2, 2, 1)), w, 2, "VALID", 1, None)
    for method, z in outs.items():
        assert z.shape == (1, 5, 5, 1), method
        np.testing.assert_allclose(z[0, :, :, 0], cover, atol=ATOL, err_msg=method)


def _cases(n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s, k = int(rng.integers(1, 4)), int(rng.integers(1, 6))
        pad = ["SAME", "VALID"][int(rng.integers(2))]
        h, w = int(rng.integers(k, 10)), int(rng.integers(k, 10))
        out.append((s, k, pad, h, w, int(rng.integers(1, 4)), int(rng.integers(1, 4))))
    return out


@pytest.mark.parametrize("s,k,pad,h,w,cx,cy", _cases(18, 0) + [
    (2, 4, "SAME", 8, 8, 3, 5), (2, 4, "SAME", 32, 30, 2, 2), (2, 4, "VALID", 10, 8, 2, 3),
    (2, 3, "SAME", 7, 6, 2, 2), (3, 5, "VALID", 11, 9, 2, 3),
    (2, 1, "SAME", 5, 6, 2, 2), (3, 2, "VALID", 8, 7, 1, 2)])
def test_four_forms_agree(s, k, pad, h, w, cx, cy):
    rng = np.random.default_rng(h * 100 + w)
    wk = _rand(rng, k, k, cx, cy)
    ho, wo = C.conv_output_size((h, w), k, s, pad)
    y = _rand(rng, 2, ho, wo, cy)
    outs = _all_forms(y, wk, s, pad, 1, (h, w))
    for method, z in outs.items():
        assert z.shape == (2, h, w, cx), method
        np.testing.assert_allclose(z, outs["matrix"], atol=ATOL, rtol=1e-5, err_msg=method)


@pytest.mark.parametrize("s,k,pad,d", [(2, 3, "SAME", 2), (1, 3, "VALID", 2), (2, 2, 1, 3)])
def test_forms_agree_with_dilation_and_int_padding(s, k, pad, d):
    rng = np.random.default_rng(1)
    wk = _rand(rng, k, k, 2, 3)
    ho, wo = C.conv_output_size((9, 10), k, s, pad, d)
    outs = _all_forms(_rand(rng, 2, ho, wo, 3), wk, s, pad, d, (9, 10))
    for method, z in outs.items():
        np.testing.assert_allclose(z, outs["matrix"], atol=ATOL, rtol=1e-5, err_msg=method)


def test_subpixel_nonsquare_kernels_and_strides():
    # lax/vjp are left out here: XLA CPU (jaxlib 0.10.2) aborts compiling some lhs-dilated convs
    # with non-square kernels (see benchmarks/README.md); the matrix form is the reference.
    rng = np.random.default_rng(2)
    for (kh, kw), (sh, sw), pad in [((5, 2), (2, 3), "SAME"), ((3, 4), (3, 2), "VALID"),
                                    ((1, 3), (2, 1), ((2, 0), (1, 1)))]:
        wk = _rand(rng, kh, kw, 2, 3)
        ho, wo = C.conv_output_size((10, 9), (kh, kw), (sh, sw), pad)
        y = _rand(rng, 2, ho, wo, 3)
        z, ref = jit(lambda y, wk: [f(y, wk, (sh, sw), pad, output_size=(10, 9)) for f in (
            C.conv_transpose_subpixel, C.conv_transpose_matrix)])(y, wk)
        np.testing.assert_allclose(z, ref, atol=ATOL, rtol=1e-5)


def test_output_size_picks_among_ambiguous_sizes():
    rng = np.random.default_rng(3)
    wk, y = _rand(rng, 3, 3, 2, 2), _rand(rng, 1, 2, 2, 2)
    # 5x5 and 6x6 inputs both give 2x2 at stride 2 VALID; the default is the smallest (5).
    assert C.conv_transpose(y, wk, 2, "VALID").shape == (1, 5, 5, 2)
    outs = _all_forms(y, wk, 2, "VALID", 1, (6, 6))
    for z in outs.values():
        np.testing.assert_allclose(z, outs["matrix"], atol=ATOL)
        np.testing.assert_allclose(z[:, 5], 0.0)  # pixel 5 is in no window
    with pytest.raises(ValueError, match="output_size"):
        C.conv_transpose(y, wk, 2, "VALID", output_size=(7, 7))


def test_conv_matrix_is_the_convolution():
    rng = np.random.default_rng(4)
    x, wk = _rand(rng, 2, 6, 7, 3), _rand(rng, 3, 3, 3, 4)
    y, a = jit(lambda x, wk: (C.conv2d(x, wk, 2, "SAME"), C.conv_matrix(wk, (6, 7), 2, "SAME")))(
        x, wk)
    np.testing.assert_allclose((x.reshape(2, -1) @ a.T).reshape(y.shape), y, atol=ATOL)


@pytest.mark.parametrize("method", ["subpixel", "lax"])
def test_transpose_is_the_adjoint(method):
    # <conv(x), y> == <x, conv_T(y)> for all x, y: the definition of the transpose.
    rng = np.random.default_rng(5)
    for s, k, pad in [(2, 3, "SAME"), (2, 4, "SAME"), (3, 5, "VALID"), (1, 3, "SAME")]:
        x, wk = _rand(rng, 2, 9, 9, 3), _rand(rng, k, k, 3, 4)
        y = _rand(rng, 2, *C.conv_output_size((9, 9), k, s, pad), 4)
        lhs, rhs = jit(lambda x, y, wk: (jnp.vdot(C.conv2d(x, wk, s, pad), y), jnp.vdot(
            x, C.conv_transpose(y, wk, s, pad, output_size=(9, 9), method=method))))(x, y, wk)
        np.testing.assert_allclose(lhs, rhs, rtol=1e-4)


def test_subpixel_weight_conversion_round_trip():
    rng = np.random.default_rng(6)
    for k, s in [((4, 4), (2, 2)), ((3, 3), (2, 2)), ((5, 3), (3, 2)), ((2, 2), (3, 3))]:
        wk = _rand(rng, *k, 2, 3)
        v = C.kernel_to_subpixel(wk, s)
        m = tuple(-(-a // b) for a, b in zip(k, s))
        assert v.shape == m + (3, s[0] * s[1] * 2)
        np.testing.assert_array_equal(C.subpixel_to_kernel(v, s, k), wk)
        np.testing.assert_array_equal(C.kernel_to_subpixel(C.subpixel_to_kernel(v, s, k), s), v)
    # The stride-1 conv with the sub-pixel kernel + depth-to-space is the transposed conv.
    wk, y = _rand(rng, 4, 4, 2, 3), _rand(rng, 1, 4, 4, 3)
    u = C.conv2d(y, C.kernel_to_subpixel(wk, 2), 1, ((1, 1), (1, 1)))
    np.testing.assert_allclose(C.depth_to_space(u, 2)[:, 1:9, 1:9],
                               C.conv_transpose_lax(y, wk, 2, "SAME"), atol=ATOL)


def test_conv_transpose_layer_matches_flax_and_gradients_agree():
    rng = np.random.default_rng(7)
    x = _rand(rng, 2, 5, 5, 3)
    layer = C.ConvTranspose(4, 4, 2, "SAME")
    params = jit(layer.init)(jax.random.key(0), x)
    assert params["params"]["kernel"].shape == (4, 4, 4, 3)
    ref = nn.ConvTranspose(4, (4, 4), (2, 2), "SAME", transpose_kernel=True)
    np.testing.assert_allclose(jit(layer.apply)(params, x), jit(ref.apply)(params, x), atol=ATOL)

    def loss(p, method):
        return jnp.sum(C.ConvTranspose(4, 4, 2, "SAME", method=method).apply(p, x) ** 2)

    g_sub, g_lax = jit(lambda p: [jax.grad(loss)(p, m) for m in ("subpixel", "lax")])(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), g_sub, g_lax)


@pytest.mark.parametrize("k,s,p,op,method", [(4, 2, 1, 0, "subpixel"), (3, 2, 1, 1, "subpixel"),
                                             (3, 1, 1, 0, "subpixel"), (5, 3, 2, 2, "subpixel"),
                                             (4, 2, 1, 0, "lax"), (3, 2, 1, 1, "vjp")])
def test_conv_transpose_layer_matches_torch(k, s, p, op, method):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    x = _rand(rng, 2, 6, 5, 3)
    layer = C.ConvTranspose(4, k, s, p, output_padding=op, method=method)
    params = jax.tree.map(lambda a: a + 0.1, jit(layer.init)(jax.random.key(1), x))  # bias != 0
    out = jit(layer.apply)(params, x)
    tw = torch.from_numpy(C.kernel_to_torch_transpose(params["params"]["kernel"]).copy())
    tb = torch.from_numpy(np.array(params["params"]["bias"]))
    tx = torch.from_numpy(np.array(x)).permute(0, 3, 1, 2)
    ref = torch.nn.functional.conv_transpose2d(tx, tw, tb, stride=s, padding=p, output_padding=op)
    np.testing.assert_allclose(out, ref.permute(0, 2, 3, 1).numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(C.kernel_from_torch_transpose(tw.numpy()),
                                  params["params"]["kernel"])


def test_conv_layer_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    x = _rand(rng, 2, 9, 8, 3)
    layer = C.Conv(5, 3, strides=2, padding=1, dilation=2)
    params = jit(layer.init)(jax.random.key(2), x)
    w = torch.from_numpy(np.asarray(params["params"]["kernel"]).transpose(3, 2, 0, 1).copy())
    tx = torch.from_numpy(np.array(x)).permute(0, 3, 1, 2)
    ref = torch.nn.functional.conv2d(tx, w, stride=2, padding=1, dilation=2)
    np.testing.assert_allclose(jit(layer.apply)(params, x), ref.permute(0, 2, 3, 1).numpy(),
                               atol=1e-5)


def test_bad_arguments_raise_one_clear_error():
    with pytest.raises(ValueError, match="padding"):
        C.conv2d(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1)), 1, "FULL")
    with pytest.raises(ValueError, match="method"):
        C.conv_transpose(jnp.ones((1, 2, 2, 1)), jnp.ones((3, 3, 1, 1)), 2, method="fft")
    with pytest.raises(ValueError, match="forward kernel"):
        C.conv_transpose(jnp.ones((1, 2, 2, 2)), jnp.ones((3, 3, 1, 1)), 2)


@pytest.mark.parametrize("s,k,pad,d", [(1, 3, "SAME", 1), (2, 3, "SAME", 1), (2, 4, "SAME", 1),
                                       (3, 5, "VALID", 1), (2, 1, "VALID", 1), (1, 3, "SAME", 2),
                                       (2, 2, ((1, 0), (0, 2)), 1)])
def test_conv2d_custom_vjp_matches_lax(s, k, pad, d):
    # conv2d's VJP (sub-pixel dx, per-tap GEMM dw) must equal JAX's own rule on the raw lax conv.
    rng = np.random.default_rng(10)
    x, wk = _rand(rng, 2, 9, 8, 3), _rand(rng, k, k, 3, 4)
    pads = C.resolve_padding(pad, (9, 8), k, s, d)
    g = _rand(rng, 2, *C.conv_output_size((9, 8), k, s, pads, d), 4)

    def raw(x, wk):
        return jax.lax.conv_general_dilated(x, wk, (s, s), pads, rhs_dilation=(d, d),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    ours, ref = jit(lambda x, wk, g: (jax.vjp(lambda a, b: C.conv2d(a, b, s, pad, d), x, wk)[1](g),
                                      jax.vjp(raw, x, wk)[1](g)))(x, wk, g)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("s", [1, 2])
def test_conv2d_vjp_with_ynnpack_off(monkeypatch, s):
    # With RECOMMENDED_CPU_XLA_FLAGS in XLA_FLAGS (read at trace time) stride-1 dw comes from XLA's
    # own kernel gradient and strided dw from kernel_gradient: both must be the same numbers.
    monkeypatch.setenv("XLA_FLAGS", C.RECOMMENDED_CPU_XLA_FLAGS)
    assert conv_grad._xla_kernel_gradient_is_fast((3, 3), (s, s), ((1, 1), (1, 1))) == (s == 1)
    rng = np.random.default_rng(11)
    x, wk = _rand(rng, 2, 8, 8, 3), _rand(rng, 3, 3, 3, 4)
    g = _rand(rng, 2, 8 // s, 8 // s, 4)
    dx, dw = jit(lambda x, wk, g: jax.vjp(lambda a, b: C.conv2d(a, b, s), x, wk)[1](g))(x, wk, g)
    np.testing.assert_allclose(dw, C.kernel_gradient(x, g, 3, s), atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(dx, C.conv_transpose_lax(g, wk, s, output_size=(8, 8)), atol=2e-5)


# Every public name of jaxgen/nn/conv.py before it was split into conv_geometry, conv_grad,
# conv_ops, conv_transpose, upsample and initializers: benchmarks and user code import them from it.
_CONV_NAMES = """
    Conv ConvTranspose IntPair Padding RECOMMENDED_CPU_XLA_FLAGS TRANSPOSE_METHODS UPSAMPLE_METHODS
    Upsample UpsampleConv conv2d conv_matrix conv_output_size conv_transpose conv_transpose_lax
    conv_transpose_matrix conv_transpose_subpixel conv_transpose_vjp depth_to_space dilate_kernel
    kernel_from_torch_transpose kernel_gradient kernel_to_subpixel kernel_to_torch_transpose
    lecun_normal_flat nearest_conv_as_transpose resolve_padding subpixel_to_kernel
    transpose_output_size upsample upsample_conv_nearest""".split()


def test_conv_module_keeps_every_name_it_had():
    assert sorted(C.__all__) == sorted(_CONV_NAMES)
    for name in _CONV_NAMES:
        if name in jaxgen.nn.__all__:  # jaxgen.nn exports the very same objects
            assert getattr(jaxgen.nn, name) is getattr(C, name), name
        else:
            assert hasattr(C, name), name
