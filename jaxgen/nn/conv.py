"""Convolution, transposed convolution in four equivalent forms, and parameter-free up-sampling.

Layout everywhere: activations NHWC `[B, H, W, C]`, kernels HWIO `[kh, kw, C_in, C_out]`.

The transposed convolution is *defined* as the transpose of a convolution matrix. Write the
stride-s convolution `y = conv2d(x, w, stride, padding)` as `vec(y) = A(w) vec(x)` with A of shape
`[Ho*Wo*C_y, H*W*C_x]`; then

    conv_transpose(y, w, stride, padding) := A(w)^T vec(y),           shape [B, H, W, C_x].

So `w` is the kernel of the *forward* convolution, `[kh, kw, C_x, C_y]` (C_x = channels the
transposed conv produces, C_y = channels it consumes); PyTorch's `conv_transpose2d` weight is
exactly `w.transpose(3, 2, 0, 1)`, and the transposed conv maps back to the input size of the
forward conv (5x5 input, 3x3 kernel, stride 2, VALID gives 2x2; the transpose maps 2x2 back to
5x5). Several H give the same Ho when s > 1 (H = 5 and 6 both give 2 above); `output_size` picks
one, like PyTorch's `output_padding`. The four forms below compute A^T y in different ways and
agree to float rounding:

  conv_transpose_lax       lax.conv_transpose: stride-1 conv of the zero-inflated input (XLA's way)
  conv_transpose_vjp       VJP of the conv w.r.t. x ("backprop through a CNN"): A^T y by definition
  conv_transpose_matrix    builds A explicitly and multiplies (teaching and tests, small sizes only)
  conv_transpose_subpixel  s^2 phase kernels as stride-1 conv(s), then depth-to-space (fast default)

Up-sampling (`upsample`, nearest or bilinear) is written as repeats and two-tap stencils; nearest
up-sampling followed by a conv is itself a transposed conv and runs as one
(`upsample_conv_nearest`).
"""
from __future__ import annotations

import functools
import math
import os
from typing import Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

IntPair = Union[int, Sequence[int]]
# 'SAME' | 'VALID' | p (same p on all four sides, PyTorch style) | ((top, bottom), (left, right))
Padding = Union[str, int, Sequence[Sequence[int]]]
_DN = ("NHWC", "HWIO", "NHWC")
TRANSPOSE_METHODS = ("subpixel", "lax", "vjp", "matrix")
UPSAMPLE_METHODS = ("nearest", "bilinear")


# ----------------------------------------------------------------------------------------------
# Geometry: padding and output sizes
# ----------------------------------------------------------------------------------------------


def _pair(v: IntPair) -> tuple[int, int]:
    return (int(v), int(v)) if np.ndim(v) == 0 else (int(v[0]), int(v[1]))


def resolve_padding(padding: Padding, in_size: IntPair, kernel_size: IntPair, stride: IntPair = 1,
                    dilation: IntPair = 1) -> tuple[tuple[int, int], tuple[int, int]]:
    """Explicit ((top, bottom), (left, right)) padding of a conv over a `in_size` (H, W) input.

    'SAME' follows XLA/TensorFlow: output ceil(H / s), total padding split with the extra pixel at
    the end. The effective kernel size is d * (k - 1) + 1 (dilation inserts d - 1 gaps).
    """
    if isinstance(padding, str):
        if padding.upper() == "VALID":
            return ((0, 0), (0, 0))
        if padding.upper() != "SAME":
            raise ValueError(f"padding must be 'SAME', 'VALID', an int or two (lo, hi) pairs, "
                             f"not {padding!r}.")
        pads = []
        for n, k, s, d in zip(_pair(in_size), _pair(kernel_size), _pair(stride), _pair(dilation)):
            total = max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)  # type: ignore[return-value]
    if np.ndim(padding) == 0:
        p = int(padding)  # type: ignore[arg-type]
        return ((p, p), (p, p))
    (a, b), (c, d) = padding  # type: ignore[misc]
    return ((int(a), int(b)), (int(c), int(d)))


def conv_output_size(in_size: IntPair, kernel_size: IntPair, stride: IntPair = 1,
                     padding: Padding = "SAME", dilation: IntPair = 1) -> tuple[int, int]:
    """(Ho, Wo) of conv2d: floor((H + lo + hi - d(k-1) - 1) / s) + 1 per axis."""
    pads = resolve_padding(padding, in_size, kernel_size, stride, dilation)
    return tuple((n + lo + hi - d * (k - 1) - 1) // s + 1  # type: ignore[return-value]
                 for n, k, s, d, (lo, hi) in zip(_pair(in_size), _pair(kernel_size), _pair(stride),
                                                 _pair(dilation), pads))


def transpose_output_size(in_size: IntPair, kernel_size: IntPair, stride: IntPair = 1,
                          padding: Padding = "SAME", dilation: IntPair = 1,
                          output_padding: IntPair = 0) -> tuple[int, int]:
    """Default (H, W) that the transposed conv of a (Ho, Wo) map produces.

    SAME: H = Ho * s (the largest H with ceil(H / s) = Ho: a clean x s up-sampling, as lax does).
    VALID / explicit: H = (Ho - 1) s + d(k - 1) + 1 - lo - hi (the smallest, as PyTorch does).
    `output_padding` (< s) adds to it, as in PyTorch.
    """
    out = []
    for i, (n, k, s, d, op) in enumerate(zip(_pair(in_size), _pair(kernel_size), _pair(stride),
                                             _pair(dilation), _pair(output_padding))):
        if isinstance(padding, str) and padding.upper() == "SAME":
            out.append(n * s + op)
        else:
            lo, hi = resolve_padding(padding, (1, 1), kernel_size)[i]
            out.append((n - 1) * s + d * (k - 1) + 1 - lo - hi + op)
    return tuple(out)  # type: ignore[return-value]


def _transpose_geometry(y: jax.Array, w: jax.Array, stride: IntPair, padding: Padding,
                        dilation: IntPair, output_size: IntPair | None):
    """Resolve (H, W) and the forward conv's explicit padding; check that conv2d maps (H, W)->y."""
    if y.ndim != 4 or w.ndim != 4 or y.shape[-1] != w.shape[3]:
        raise ValueError(f"expected y [B, Ho, Wo, C_y] and the forward kernel [kh, kw, C_x, C_y]; "
                         f"got y {y.shape} and w {w.shape}.")
    ksize, in_y = w.shape[:2], y.shape[1:3]
    size = _pair(output_size) if output_size is not None else transpose_output_size(
        in_y, ksize, stride, padding, dilation)
    pads = resolve_padding(padding, size, ksize, stride, dilation)
    if conv_output_size(size, ksize, stride, pads, dilation) != tuple(in_y):
        raise ValueError(f"output_size {size} is not a size that conv2d (kernel {tuple(ksize)}, "
                         f"stride {stride}, padding {padding}) maps to the input's {tuple(in_y)}.")
    return size, pads


# ----------------------------------------------------------------------------------------------
# Convolution
# ----------------------------------------------------------------------------------------------


def conv2d(x: jax.Array, w: jax.Array, stride: IntPair = 1, padding: Padding = "SAME",
           dilation: IntPair = 1) -> jax.Array:
    """Cross-correlation y[o] = sum_k x[o*s + k*d - lo] w[k]: x [B,H,W,Ci], w [kh,kw,Ci,Co] -> y
    [B,Ho,Wo,Co].

    Same numbers as lax.conv_general_dilated, with a custom VJP (see _conv_bwd) because XLA CPU's
    own gradients are slow: its default kernel-gradient convolution runs 10-100x slower than the
    forward conv on this machine.
    """
    pads = resolve_padding(padding, x.shape[1:3], w.shape[:2], stride, dilation)
    return _conv(x, w, _pair(stride), pads, _pair(dilation))


# XLA CPU (jaxlib 0.10) runs convolutions through YNNPACK by default, single-threaded (measured:
# 1.0 CPU-second per second, vs 1.9 for its Eigen path and PyTorch), which halves conv speed on
# 2 cores. Put this in XLA_FLAGS before JAX starts to use Eigen: conv rows 1.4-2x faster here.
RECOMMENDED_CPU_XLA_FLAGS = "--xla_cpu_experimental_ynn_fusion_type="


def _ynn_disabled() -> bool:
    flags = os.environ.get("XLA_FLAGS", "").split()
    return "--xla_cpu_experimental_ynn_fusion_type=" in flags


def _xla_kernel_gradient_is_fast(ksize, stride, pads) -> bool:
    """Whether XLA's own kernel gradient beats kernel_gradient's GEMMs (measured, see _conv_bwd)."""
    same_size = all(lo + hi <= k - 1 for k, (lo, hi) in zip(ksize, pads))
    return _ynn_disabled() and tuple(stride) == (1, 1) and min(ksize) > 1 and same_size


def _raw_conv(x, w, stride, pads, dilation):
    return lax.conv_general_dilated(x, w, stride, pads, rhs_dilation=dilation,
                                    dimension_numbers=_DN)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, w, stride, pads, dilation):
    return _raw_conv(x, w, stride, pads, dilation)


def _conv_fwd(x, w, stride, pads, dilation):
    return _conv(x, w, stride, pads, dilation), (x, w)


def _conv_bwd(stride, pads, dilation, res, g):
    """Cotangents of y = conv(x, w): dx = A(w)^T g, dw[k] = sum_{b,o} x[o*s + k*d - lo] g[o].

    On CPU, dx is the transposed conv in its sub-pixel form (faster than XLA's lhs-dilated conv).
    dw: with YNNPACK on (XLA's default), XLA lowers the 'kernel-gradient' convolution (batch as the
    contracted feature) to a slow single-threaded loop (3x3, 32x32x64, batch 32: 460 ms vs 36 ms
    for the forward conv; for the sub-pixel kernel of a transposed conv 3.1 s vs 35 ms), so it is
    written as one GEMM per tap ([Ci, N] @ [N, Co], N = B*Ho*Wo: 56-125 ms). With YNNPACK off
    (RECOMMENDED_CPU_XLA_FLAGS) XLA's Eigen kernel gradient is faster for stride-1 k x k convs and
    slower for the rest; taking the faster per case cut a U-Net step from 3.2 s (all GEMM) or 4.2 s
    (all XLA) to 2.5 s. Other backends (cuDNN, TPU) keep JAX's own rule.
    """
    x, w = res
    native = jax.vjp(lambda a, b: _raw_conv(a, b, stride, pads, dilation), x, w)[1]
    if jax.default_backend() != "cpu":
        return native(g)
    dx = conv_transpose_subpixel(g, w, stride, pads, dilation, output_size=x.shape[1:3])
    if _xla_kernel_gradient_is_fast(w.shape[:2], stride, pads):
        dw = jax.vjp(lambda b: _raw_conv(x, b, stride, pads, dilation), w)[1](g)[0]
    else:
        dw = kernel_gradient(x, g, w.shape[:2], stride, pads, dilation)
    return dx, dw


_conv.defvjp(_conv_fwd, _conv_bwd)


def kernel_gradient(x: jax.Array, g: jax.Array, kernel_size: IntPair, stride: IntPair = 1,
                    padding: Padding = "SAME", dilation: IntPair = 1) -> jax.Array:
    """dL/dw of y = conv2d(x, w) given g = dL/dy: x [B,H,W,Ci], g [B,Ho,Wo,Co] -> [kh,kw,Ci,Co]."""
    (kh, kw), (sh, sw), (dh, dw) = _pair(kernel_size), _pair(stride), _pair(dilation)
    (lo_h, hi_h), (lo_w, hi_w) = resolve_padding(padding, x.shape[1:3], (kh, kw), stride, dilation)
    b, ho, wo, co = g.shape
    zero = jnp.zeros((), x.dtype)
    xp = lax.pad(x, zero, ((0, 0, 0), (lo_h, hi_h, 0), (lo_w, hi_w, 0), (0, 0, 0)))
    # Tap (i, j) sees x at rows o*s + i*d - lo, a strided slice of the padded input; one GEMM per
    # tap ([Ci, N] @ [N, Co]) measured faster than one GEMM over stacked im2col patches, whose
    # 5-D stack copy cost more than the products.
    gn = g.reshape(b * ho * wo, co)
    taps = [jnp.einsum("nc,nd->cd", lax.slice(
        xp, (0, i * dh, j * dw, 0), (b, i * dh + (ho - 1) * sh + 1, j * dw + (wo - 1) * sw + 1,
                                     x.shape[-1]), (1, sh, sw, 1)).reshape(b * ho * wo, -1), gn)
            for i in range(kh) for j in range(kw)]
    dw_ = jnp.stack(taps)  # [kh*kw, Ci, Co]
    return dw_.reshape(kh, kw, x.shape[-1], co)


def dilate_kernel(w: jax.Array, dilation: IntPair) -> jax.Array:
    """[kh,kw,I,O] -> [d(kh-1)+1, d(kw-1)+1, I, O] with d-1 zeros between taps (same conv, d=1)."""
    dy, dx = _pair(dilation)
    if (dy, dx) == (1, 1):
        return w
    kh, kw = w.shape[:2]
    out = jnp.zeros((dy * (kh - 1) + 1, dx * (kw - 1) + 1) + w.shape[2:], w.dtype)
    return out.at[::dy, ::dx].set(w)


# ----------------------------------------------------------------------------------------------
# Transposed convolution: four forms of A^T y
# ----------------------------------------------------------------------------------------------


def conv_transpose_lax(y: jax.Array, w: jax.Array, stride: IntPair = 1, padding: Padding = "SAME",
                       dilation: IntPair = 1, output_size: IntPair | None = None) -> jax.Array:
    """lax.conv_transpose: y [B,Ho,Wo,Cy], w [kh,kw,Cx,Cy] (forward kernel) -> [B,H,W,Cx].

    XLA inserts s - 1 zeros between input pixels and runs a stride-1 conv with the flipped kernel.
    Per axis (k_d = d(k-1)+1), output i reads inflated position i + lo - k_d + 1 + j for tap j, so
    the conv's own padding is (k_d - 1 - lo, H + lo - 1 - (Ho - 1) s): we pass it explicitly so the
    result is the exact adjoint of conv2d (lax's 'SAME' rule differs from it for some shapes).
    """
    (h, wd), pads = _transpose_geometry(y, w, stride, padding, dilation, output_size)
    lax_pads = _inflated_padding((h, wd), y.shape[1:3], w.shape[:2], stride, dilation, pads)
    return lax.conv_transpose(y, w, _pair(stride), lax_pads, rhs_dilation=_pair(dilation),
                              dimension_numbers=_DN, transpose_kernel=True)


def _inflated_padding(size, in_size, ksize, stride, dilation, pads) -> list[tuple[int, int]]:
    """Padding of the stride-1 conv over the zero-inflated input that computes A^T y (see above)."""
    return [(d * (k - 1) - lo, n + lo - 1 - (n_y - 1) * s) for n, n_y, k, s, d, (lo, _) in
            zip(size, in_size, ksize, _pair(stride), _pair(dilation), pads)]


def conv_transpose_vjp(y: jax.Array, w: jax.Array, stride: IntPair = 1, padding: Padding = "SAME",
                       dilation: IntPair = 1, output_size: IntPair | None = None) -> jax.Array:
    """A^T y as the vector-Jacobian product of x -> conv(x, w): exactly what backprop computes.

    Differentiates the raw lax convolution, so this is JAX's own transpose rule (conv2d's custom
    VJP would route it to the sub-pixel form).
    """
    (h, wd), pads = _transpose_geometry(y, w, stride, padding, dilation, output_size)
    x0 = jnp.zeros((y.shape[0], h, wd, w.shape[2]), y.dtype)
    raw = lambda x: lax.conv_general_dilated(x, w, _pair(stride), pads,  # noqa: E731
                                             rhs_dilation=_pair(dilation), dimension_numbers=_DN)
    _, pullback = jax.vjp(raw, x0)
    return pullback(y)[0]


def conv_matrix(w: jax.Array, in_size: IntPair, stride: IntPair = 1, padding: Padding = "SAME",
                dilation: IntPair = 1) -> jax.Array:
    """The dense matrix A with vec(conv2d(x, w)) = A vec(x): [Ho*Wo*Co, H*W*Ci] (row-major NHWC).

    A[(oy,ox,co), (iy,ix,ci)] = sum over taps with iy = oy*s + ky*d - lo (same for x) of
    w[ky,kx,ci,co]. Built from two 0/1 selection tensors S[o, k, i] = [i == o*s + k*d - lo]; taps
    that land in the padding select nothing, which is zero padding. Memory grows as (H W)^2.
    """
    (h, wd), ksize = _pair(in_size), w.shape[:2]
    pads = resolve_padding(padding, (h, wd), ksize, stride, dilation)
    ho, wo = conv_output_size((h, wd), ksize, stride, pads, dilation)
    sel = []
    for n, n_out, k, s, d, (lo, _) in zip((h, wd), (ho, wo), ksize, _pair(stride), _pair(dilation),
                                          pads):
        o, t, i = np.ogrid[:n_out, :k, :n]
        sel.append(jnp.asarray(i == o * s + t * d - lo, w.dtype))
    a = jnp.einsum("akp,blq,klcd->abdpqc", sel[0], sel[1], w)
    return a.reshape(ho * wo * w.shape[3], h * wd * w.shape[2])


def conv_transpose_matrix(y: jax.Array, w: jax.Array, stride: IntPair = 1,
                          padding: Padding = "SAME", dilation: IntPair = 1,
                          output_size: IntPair | None = None) -> jax.Array:
    """A^T y with A = conv_matrix(...) built explicitly. For teaching and tests only."""
    (h, wd), pads = _transpose_geometry(y, w, stride, padding, dilation, output_size)
    a = conv_matrix(w, (h, wd), stride, pads, dilation)
    z = y.reshape(y.shape[0], -1) @ a  # rows of y times A == (A^T y) per example
    return z.reshape(y.shape[0], h, wd, w.shape[2])


def kernel_to_subpixel(w: jax.Array, stride: IntPair) -> jax.Array:
    """Forward kernel [kh,kw,Cx,Cy] -> sub-pixel kernel [Mh, Mw, Cy, sh*sw*Cx], M = ceil(k / s).

    Per axis, output position p (in padded coordinates) with phase r = p mod s and p = q*s + r only
    receives the taps k = m*s + r, from y[q - m]. So the phase-r output is a stride-1 correlation of
    y with the flipped sub-kernel v_r[j] = w[(M-1-j)*s + r] (taps past k-1 are zero). All s^2 phase
    kernels are stacked as output channels in (ry, rx, c) order, the order depth_to_space reads.
    """
    sh, sw = _pair(stride)
    kh, kw, cx, cy = w.shape
    mh, mw = -(-kh // sh), -(-kw // sw)
    w = jnp.pad(w, ((0, mh * sh - kh), (0, mw * sw - kw), (0, 0), (0, 0)))
    v = w.reshape(mh, sh, mw, sw, cx, cy)[::-1, :, ::-1]  # [m, r] = k = m*s + r, then j = M-1-m
    return v.transpose(0, 2, 5, 1, 3, 4).reshape(mh, mw, cy, sh * sw * cx)


def subpixel_to_kernel(v: jax.Array, stride: IntPair, kernel_size: IntPair) -> jax.Array:
    """Inverse of kernel_to_subpixel: [Mh,Mw,Cy,sh*sw*Cx] -> [kh,kw,Cx,Cy].

    Exact; taps with m*s + r >= k (zero in any kernel_to_subpixel output) are dropped.
    """
    (sh, sw), (kh, kw) = _pair(stride), _pair(kernel_size)
    mh, mw, cy, n = v.shape
    cx = n // (sh * sw)
    w = v.reshape(mh, mw, cy, sh, sw, cx).transpose(0, 3, 1, 4, 5, 2)[::-1, :, ::-1]
    return w.reshape(mh * sh, mw * sw, cx, cy)[:kh, :kw]


def depth_to_space(u: jax.Array, block: IntPair) -> jax.Array:
    """[B, Q, P, bh*bw*C] with channels in (ry, rx, c) order -> [B, Q*bh, P*bw, C]."""
    bh, bw = _pair(block)
    b, q, p, n = u.shape
    c = n // (bh * bw)
    return u.reshape(b, q, p, bh, bw, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, q * bh, p * bw, c)


def conv_transpose_subpixel(y: jax.Array, w: jax.Array, stride: IntPair = 1,
                            padding: Padding = "SAME", dilation: IntPair = 1,
                            output_size: IntPair | None = None) -> jax.Array:
    """Sub-pixel form: stride-1 phase convolutions, then depth-to-space. Fast default.

    No zero is multiplied, unlike lax's inflated input that wastes a factor s^2 (see
    kernel_to_subpixel for the phase decomposition). Two executions of the same decomposition:
      * s = 1: a single phase, the conv with the flipped kernel (the same HLO as lax's, so as fast).
      * k % s == 0 on both axes (e.g. k = 4, s = 2) and maps of 16+ pixels: every phase has M = k/s
        taps, so all
        s^2 phases run as ONE conv with s^2 * Cx output channels (the kernel_to_subpixel layout)
        over the q-grid q in [lo // s, (H - 1 + lo) // s]; depth-to-space, then crop lo mod s.
      * otherwise (e.g. k = 3, s = 2: phases of 2 and 1 taps; or small maps): one conv per phase,
        so the zero taps of the padded sub-pixel kernel are not multiplied either (for k = 3 they
        would be 16 / 9 = 1.8x the work), then the phases are interleaved.
    """
    (h, wd), pads = _transpose_geometry(y, w, stride, padding, dilation, output_size)
    w = dilate_kernel(w, dilation)
    strides, ksize = _pair(stride), w.shape[:2]
    if strides == (1, 1):  # one phase: a plain conv with the flipped, I/O-swapped kernel
        w_flip = w[::-1, ::-1].transpose(0, 1, 3, 2)
        return conv2d(y, w_flip, 1, _inflated_padding((h, wd), y.shape[1:3], ksize, 1, 1, pads))
    # The single conv computes the phases on the q-grid q in [lo // s, (H - 1 + lo) // s], which is
    # one row / column larger than the output when lo mod s != 0 (k = 4, s = 2, SAME): 27% extra
    # work for an 8x8 input. Above 15% the per-phase convs below are faster (measured).
    grid = [(n - 1 + lo) // s - lo // s + 1 for n, s, (lo, _) in zip((h, wd), strides, pads)]
    extra = grid[0] * strides[0] * grid[1] * strides[1] / (h * wd)
    if all(k % s == 0 for k, s in zip(ksize, strides)) and extra <= 1.15:
        v = kernel_to_subpixel(w, strides)
        conv_pads, crop = [], []
        for n, n_y, m, s, (lo, _) in zip((h, wd), y.shape[1:3], v.shape[:2], strides, pads):
            q0, q1 = lo // s, (n - 1 + lo) // s
            conv_pads.append((m - 1 - q0, q1 - n_y + 1))  # conv output index 0 is q = q0
            crop.append(lo - q0 * s)
        z = depth_to_space(conv2d(y, v, 1, conv_pads), strides)
        return z[:, crop[0]:crop[0] + h, crop[1]:crop[1] + wd]

    # Phase by output position: i = t*s + r' has padded position p = i + lo = q*s + r with
    # r = (r' + lo) mod s and q = t + c, c = (r' + lo) // s; it reads taps k = m*s + r from
    # y[q - m].
    t_len = [-(-n // s) for n, s in zip((h, wd), strides)]  # every phase computed on this grid
    rows = []
    for ry in range(strides[0]):
        row = []
        for rx in range(strides[1]):
            taps, conv_pads = [], []
            for r_out, s, k, n_y, t_n, (lo, _) in zip((ry, rx), strides, ksize, y.shape[1:3], t_len,
                                                      pads):
                r, c = (r_out + lo) % s, (r_out + lo) // s
                m = len(range(r, k, s))
                taps.append(slice(r, None, s))
                conv_pads.append((m - 1 - c, t_n - n_y + c))  # y[t + c - m + 1 + j], tap j
            w_phase = w[taps[0], taps[1]][::-1, ::-1].transpose(0, 1, 3, 2)
            if 0 in w_phase.shape[:2]:  # k < s: this phase receives no tap at all
                row.append(jnp.zeros((y.shape[0], t_len[0], t_len[1], w.shape[2]), y.dtype))
            else:
                row.append(conv2d(y, w_phase, 1, conv_pads))
        rows.append(jnp.stack(row, axis=3))  # [B, T, P, sx, Cx]
    z = jnp.stack(rows, axis=2)  # [B, T, sy, P, sx, Cx]
    b, t, sy, p, sx, cx = z.shape
    return z.reshape(b, t * sy, p * sx, cx)[:, :h, :wd]


_TRANSPOSE_FNS = {"subpixel": conv_transpose_subpixel, "lax": conv_transpose_lax,
                  "vjp": conv_transpose_vjp, "matrix": conv_transpose_matrix}


def conv_transpose(y: jax.Array, w: jax.Array, stride: IntPair = 1, padding: Padding = "SAME",
                   dilation: IntPair = 1, output_size: IntPair | None = None,
                   method: str = "subpixel") -> jax.Array:
    """A^T y in the form `method` (one of TRANSPOSE_METHODS); all give the same numbers."""
    if method not in _TRANSPOSE_FNS:
        raise ValueError(f"method must be one of {TRANSPOSE_METHODS}, not {method!r}.")
    return _TRANSPOSE_FNS[method](y, w, stride, padding, dilation, output_size)


# ----------------------------------------------------------------------------------------------
# Parameter-free up-sampling
# ----------------------------------------------------------------------------------------------


def _bilinear_axis(x: jax.Array, f: int, axis: int) -> jax.Array:
    """Integer-factor linear interpolation along `axis`, half-pixel centres (align_corners=False).

    Output i = t*f + r samples source coordinate t + delta_r, delta_r = (r + 1/2)/f - 1/2 in
    (-1/2, 1/2): a two-tap stencil per phase. Edge replication equals PyTorch's clamp of the source
    index and jax.image.resize's renormalised edge weights.
    """
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (1, 1)
    xp = jnp.pad(x, pad, mode="edge")
    take = lambda a: lax.slice_in_dim(xp, a, a + n, axis=axis)  # noqa: E731  xp[a : a + n]
    phases = []
    for r in range(f):
        d = (r + 0.5) / f - 0.5
        phases.append(-d * take(0) + (1 + d) * take(1) if d < 0 else
                      (1 - d) * take(1) + d * take(2))
    out = jnp.stack(phases, axis=axis + 1)
    return out.reshape(x.shape[:axis] + (n * f,) + x.shape[axis + 1:])


def upsample(x: jax.Array, factor: IntPair = 2, method: str = "nearest") -> jax.Array:
    """[B,H,W,C] -> [B,H*fh,W*fw,C]; equals jax.image.resize, F.interpolate(align_corners=False).

    Written as repeats / two-tap stencils rather than jax.image.resize, which contracts with a dense
    [H*f, H] weight matrix per axis.
    """
    fh, fw = _pair(factor)
    b, h, w, c = x.shape
    if method == "nearest":
        x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, fh, w, fw, c))
        return x.reshape(b, h * fh, w * fw, c)
    if method == "bilinear":
        return _bilinear_axis(_bilinear_axis(x, fh, 1), fw, 2)
    raise ValueError(f"upsample method must be one of {UPSAMPLE_METHODS}, not {method!r}.")


def nearest_conv_as_transpose(w: jax.Array, factor: IntPair) -> jax.Array:
    """Kernel of the transposed conv equal to nearest-upsample(x f) then conv2d(., w).

    Per axis, nearest up-sampling is the transposed conv with a box of f ones at stride f, and a
    conv after it composes into one transposed conv (stride f) whose kernel is the box-filtered
    flipped kernel, wt[l] = sum_{j = l-f+1..l} w[k-1-j] for l = 0..k+f-2, with padding
    lo_t = k - 1 - lo.
    w [k,k,Ci,Co] (conv after the up-sampling) -> [k+fh-1, k+fw-1, Co, Ci] (forward-kernel layout).
    """
    wt = w[::-1, ::-1].transpose(0, 1, 3, 2)
    for axis, f in enumerate(_pair(factor)):
        k = wt.shape[axis]
        box = np.zeros((k + f - 1, k), np.float32)  # box[l, j] = [l - f < j <= l]
        for l_ in range(k + f - 1):
            box[l_, max(0, l_ - f + 1):min(k, l_ + 1)] = 1.0
        wt = jnp.tensordot(jnp.asarray(box, w.dtype), wt, axes=([1], [axis]))
        wt = jnp.moveaxis(wt, 0, axis)
    return wt


def upsample_conv_nearest(x: jax.Array, w: jax.Array, factor: IntPair = 2,
                          padding: Padding = "SAME", dilation: IntPair = 1) -> jax.Array:
    """conv2d(upsample(x, f, 'nearest'), w, padding), computed as one sub-pixel transposed conv.

    Same numbers up to float rounding (taps hitting the same source pixel are summed first), but for
    f = 2, k = 3 it does 16 multiply-adds per 4 output pixels instead of 36 and never materialises
    the up-sampled map. Out-of-range up-sampled positions map to out-of-range source pixels, so zero
    padding carries over exactly. Per axis the transposed conv's padding is (k - 1 - lo, hi_t), hi_t
    chosen so that its forward conv maps Ho back to H.
    """
    w = dilate_kernel(w, dilation)
    h_up = tuple(n * f for n, f in zip(x.shape[1:3], _pair(factor)))
    pads = resolve_padding(padding, h_up, w.shape[:2])
    out_size = conv_output_size(h_up, w.shape[:2], 1, pads)
    t_pads = []
    for n, n_out, k, f, (lo, _) in zip(x.shape[1:3], out_size, w.shape[:2], _pair(factor), pads):
        lo_t = k - 1 - lo  # from matching A^T's taps to the composed kernel, see docstring
        t_pads.append((lo_t, (n - 1) * f + (k + f - 1) - n_out - lo_t))
    return conv_transpose_subpixel(x, nearest_conv_as_transpose(w, factor), factor, t_pads,
                                   output_size=out_size)


# ----------------------------------------------------------------------------------------------
# Linen layers
# ----------------------------------------------------------------------------------------------


def lecun_normal_flat(out_axis: int = -1) -> nn.initializers.Initializer:
    """lecun_normal (truncated normal, variance 1 / fan_in) drawn as a 1-D array, then reshaped.

    fan_in = size / shape[out_axis] (receptive field x inputs), as flax computes it. Why flat: with
    jax_threefry_partitionable (the default since JAX 0.5) XLA CPU compiles threefry over 4-D shapes
    very slowly (measured: 10 conv kernels take 30 s to compile in 4-D, 4 s in 1-D), which made a
    small U-Net's `init` take half a minute to compile.
    """
    def init(key: jax.Array, shape: Sequence[int], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        size = math.prod(shape)
        std = math.sqrt(1.0 / (size // shape[out_axis])) / 0.87962566103423978  # trunc. N(0,1) std
        return (jax.random.truncated_normal(key, -2.0, 2.0, (size,), dtype) * std).reshape(shape)

    return init


def kernel_to_torch_transpose(w: jax.Array) -> np.ndarray:
    """ConvTranspose kernel [kh,kw,Cout,Cin] -> torch conv_transpose2d weight [Cin,Cout,kh,kw]."""
    return np.asarray(w).transpose(3, 2, 0, 1)


def kernel_from_torch_transpose(wt: np.ndarray) -> jax.Array:
    """torch conv_transpose2d weight [Cin,Cout,kh,kw] -> ConvTranspose kernel [kh,kw,Cout,Cin]."""
    return jnp.asarray(np.asarray(wt).transpose(2, 3, 1, 0))


class Conv(nn.Module):
    """Convolution layer: [B,H,W,Cin] -> [B,Ho,Wo,features]; kernel [kh,kw,Cin,features], bias.

    `dtype` is the computation dtype (e.g. bfloat16 on accelerators); params stay float32.
    """

    features: int
    kernel_size: IntPair = 3
    strides: IntPair = 1
    padding: Padding = "SAME"
    dilation: IntPair = 1
    use_bias: bool = True
    dtype: jnp.dtype | None = None
    kernel_init: nn.initializers.Initializer = lecun_normal_flat()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init,
                            _pair(self.kernel_size) + (x.shape[-1], self.features))
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
        y = conv2d(x, kernel, self.strides, self.padding, self.dilation)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,)).astype(y.dtype)
        return y


class ConvTranspose(nn.Module):
    """Transposed convolution (A^T y, see the module docstring): [B,Ho,Wo,Cin] -> [B,H,W,features].

    The kernel is stored in the layout of the forward convolution it transposes, [kh, kw, features,
    Cin], so `kernel_to_torch_transpose` gives PyTorch's ConvTranspose2d weight exactly; with
    integer `padding` p and `output_padding` op this layer computes what ConvTranspose2d(padding=p,
    output_padding=op) does. Output size: H = Ho * s for 'SAME', (Ho - 1) s + k - 2p + op otherwise
    (`transpose_output_size`), or `output_size` at call time. `method` picks one of the four
    equivalent forms; 'subpixel' (default) is the fast one.
    """

    features: int
    kernel_size: IntPair = 4
    strides: IntPair = 2
    padding: Padding = "SAME"
    dilation: IntPair = 1
    output_padding: IntPair = 0
    method: str = "subpixel"
    use_bias: bool = True
    dtype: jnp.dtype | None = None
    # fan_in = k^2 * Cin (the kernel's size over its `features` axis), as for flax's ConvTranspose.
    kernel_init: nn.initializers.Initializer = lecun_normal_flat(out_axis=-2)
    bias_init: nn.initializers.Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array, output_size: IntPair | None = None) -> jax.Array:
        ksize = _pair(self.kernel_size)
        kernel = self.param("kernel", self.kernel_init, ksize + (self.features, x.shape[-1]))
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
        if output_size is None:
            output_size = transpose_output_size(x.shape[1:3], ksize, self.strides, self.padding,
                                                self.dilation, self.output_padding)
        y = conv_transpose(x, kernel, self.strides, self.padding, self.dilation, output_size,
                           self.method)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,)).astype(y.dtype)
        return y


class Upsample(nn.Module):
    """Parameter-free up-sampling by an integer factor: [B,H,W,C] -> [B,Hf,Wf,C]."""

    factor: IntPair = 2
    method: str = "nearest"

    def __call__(self, x: jax.Array) -> jax.Array:
        return upsample(x, self.factor, self.method)


class UpsampleConv(nn.Module):
    """Up-sample (nearest or bilinear, no params), then a conv: [B,H,W,Cin] -> [B,Hf,Wf,features].

    Params are those of the Conv after the up-sampling ([k,k,Cin,features], bias), so the layer
    converts to torch `nn.Upsample` + `nn.Conv2d`. With method='nearest' and `fused` the pair runs
    as one sub-pixel transposed conv on the low-resolution input (`upsample_conv_nearest`).
    """

    features: int
    factor: IntPair = 2
    method: str = "nearest"
    kernel_size: IntPair = 3
    padding: Padding = "SAME"
    fused: bool = True
    use_bias: bool = True
    dtype: jnp.dtype | None = None
    kernel_init: nn.initializers.Initializer = lecun_normal_flat()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init,
                            _pair(self.kernel_size) + (x.shape[-1], self.features))
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
        if self.method == "nearest" and self.fused:
            y = upsample_conv_nearest(x, kernel, self.factor, self.padding)
        else:
            y = conv2d(upsample(x, self.factor, self.method), kernel, 1, self.padding)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,)).astype(y.dtype)
        return y
