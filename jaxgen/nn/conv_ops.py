"""The two convolution ops every jaxgen conv layer runs: conv2d and the sub-pixel transposed conv.

  conv2d                   cross-correlation, with jaxgen's own gradient on CPU (conv_grad.py)
  conv_transpose_subpixel  the transposed convolution A^T y (see conv_transpose.py) as s^2 phase
                           convolutions and a depth-to-space: the fast form, used by ConvTranspose
                           and UpsampleConv; the other three forms live in conv_transpose.py

The two live in one module because each is built from the other: on CPU, conv2d's gradient with
respect to its input is the sub-pixel transposed conv, and that is a handful of stride-1 conv2d
calls (so that *its* gradient is conv2d's fast one too). Split across two modules they would import
each other.

Layout: activations NHWC `[B, H, W, C]`, kernels HWIO `[kh, kw, C_in, C_out]`.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxgen.nn.conv_geometry import (IntPair, Padding, as_pair, dilate_kernel, inflated_padding,
                                     resolve_padding, transpose_geometry)
from jaxgen.nn.conv_grad import cpu_kernel_gradient, lax_conv

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
    return _conv(x, w, as_pair(stride), pads, as_pair(dilation))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, w, stride, pads, dilation):
    return lax_conv(x, w, stride, pads, dilation)


def _conv_fwd(x, w, stride, pads, dilation):
    return _conv(x, w, stride, pads, dilation), (x, w)


def _conv_bwd(stride, pads, dilation, res, g):
    """Cotangents of y = conv(x, w): dx = A(w)^T g, dw[k] = sum_{b,o} x[o*s + k*d - lo] g[o].

    On CPU, dx is the transposed conv in its sub-pixel form (faster than XLA's lhs-dilated conv)
    and dw comes from conv_grad.cpu_kernel_gradient (XLA's kernel-gradient conv is slow there).
    Other backends (cuDNN, TPU) keep JAX's own rule.
    """
    x, w = res
    if jax.default_backend() != "cpu":
        return jax.vjp(lambda a, b: lax_conv(a, b, stride, pads, dilation), x, w)[1](g)
    dx = conv_transpose_subpixel(g, w, stride, pads, dilation, output_size=x.shape[1:3])
    return dx, cpu_kernel_gradient(x, g, w, stride, pads, dilation)


_conv.defvjp(_conv_fwd, _conv_bwd)


# ----------------------------------------------------------------------------------------------
# Sub-pixel transposed convolution
# ----------------------------------------------------------------------------------------------


def kernel_to_subpixel(w: jax.Array, stride: IntPair) -> jax.Array:
    """Forward kernel [kh,kw,Cx,Cy] -> sub-pixel kernel [Mh, Mw, Cy, sh*sw*Cx], M = ceil(k / s).

    Per axis, output position p (in padded coordinates) with phase r = p mod s and p = q*s + r only
    receives the taps k = m*s + r, from y[q - m]. So the phase-r output is a stride-1 correlation of
    y with the flipped sub-kernel v_r[j] = w[(M-1-j)*s + r] (taps past k-1 are zero). All s^2 phase
    kernels are stacked as output channels in (ry, rx, c) order, the order depth_to_space reads.
    """
    sh, sw = as_pair(stride)
    kh, kw, cx, cy = w.shape
    mh, mw = -(-kh // sh), -(-kw // sw)
    w = jnp.pad(w, ((0, mh * sh - kh), (0, mw * sw - kw), (0, 0), (0, 0)))
    v = w.reshape(mh, sh, mw, sw, cx, cy)[::-1, :, ::-1]  # [m, r] = k = m*s + r, then j = M-1-m
    return v.transpose(0, 2, 5, 1, 3, 4).reshape(mh, mw, cy, sh * sw * cx)


def subpixel_to_kernel(v: jax.Array, stride: IntPair, kernel_size: IntPair) -> jax.Array:
    """Inverse of kernel_to_subpixel: [Mh,Mw,Cy,sh*sw*Cx] -> [kh,kw,Cx,Cy].

    Exact; taps with m*s + r >= k (zero in any kernel_to_subpixel output) are dropped.
    """
    (sh, sw), (kh, kw) = as_pair(stride), as_pair(kernel_size)
    mh, mw, cy, n = v.shape
    cx = n // (sh * sw)
    w = v.reshape(mh, mw, cy, sh, sw, cx).transpose(0, 3, 1, 4, 5, 2)[::-1, :, ::-1]
    return w.reshape(mh * sh, mw * sw, cx, cy)[:kh, :kw]


def depth_to_space(u: jax.Array, block: IntPair) -> jax.Array:
    """[B, Q, P, bh*bw*C] with channels in (ry, rx, c) order -> [B, Q*bh, P*bw, C]."""
    bh, bw = as_pair(block)
    b, q, p, n = u.shape
    c = n // (bh * bw)
    return u.reshape(b, q, p, bh, bw, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, q * bh, p * bw, c)


def conv_transpose_subpixel(y: jax.Array, w: jax.Array, stride: IntPair = 1,
                            padding: Padding = "SAME", dilation: IntPair = 1,
                            output_size: IntPair | None = None) -> jax.Array:
    """Sub-pixel form: stride-1 phase convolutions, then depth-to-space. Fast default.

    No zero is multiplied, unlike lax's inflated input that wastes a factor s^2 (see
    kernel_to_subpixel for the phase decomposition). The decomposition runs in one of three ways:
      * s = 1: a single phase, the conv with the flipped kernel (the same HLO as lax's, so as fast).
      * k % s == 0 on both axes (e.g. k = 4, s = 2) and maps of 16+ pixels: every phase has M = k/s
        taps, so all s^2 phases run as ONE conv with s^2 * Cx output channels (the
        kernel_to_subpixel layout) over the q-grid q in [lo // s, (H - 1 + lo) // s];
        depth-to-space, then crop lo mod s.
      * otherwise (e.g. k = 3, s = 2: phases of 2 and 1 taps; or small maps): one conv per phase,
        so the zero taps of the padded sub-pixel kernel are not multiplied either (for k = 3 they
        would be 16 / 9 = 1.8x the work), then the phases are interleaved.
    """
    (h, wd), pads = transpose_geometry(y, w, stride, padding, dilation, output_size)
    w = dilate_kernel(w, dilation)
    strides, ksize = as_pair(stride), w.shape[:2]
    if strides == (1, 1):  # one phase: a plain conv with the flipped, I/O-swapped kernel
        w_flip = w[::-1, ::-1].transpose(0, 1, 3, 2)
        return conv2d(y, w_flip, 1, inflated_padding((h, wd), y.shape[1:3], ksize, 1, 1, pads))
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
