"""Up-sampling by an integer factor: parameter-free (nearest, bilinear), and followed by a conv.

Up-sampling is written as repeats and two-tap stencils (`upsample`, equal to jax.image.resize and
PyTorch's F.interpolate(align_corners=False)). Nearest up-sampling followed by a conv is itself a
transposed conv and runs as one (`upsample_conv_nearest`): the `UpsampleConv` layer's fast path.
Layout: activations NHWC `[B, H, W, C]`, kernels HWIO `[kh, kw, C_in, C_out]`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

from jaxgen.nn.conv_geometry import (IntPair, Padding, as_pair, conv_output_size, dilate_kernel,
                                     resolve_padding)
from jaxgen.nn.conv_ops import conv2d, conv_transpose_subpixel
from jaxgen.nn.initializers import lecun_normal_flat

UPSAMPLE_METHODS = ("nearest", "bilinear")


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
    fh, fw = as_pair(factor)
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
    for axis, f in enumerate(as_pair(factor)):
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
    h_up = tuple(n * f for n, f in zip(x.shape[1:3], as_pair(factor)))
    pads = resolve_padding(padding, h_up, w.shape[:2])
    out_size = conv_output_size(h_up, w.shape[:2], 1, pads)
    t_pads = []
    for n, n_out, k, f, (lo, _) in zip(x.shape[1:3], out_size, w.shape[:2], as_pair(factor), pads):
        lo_t = k - 1 - lo  # from matching A^T's taps to the composed kernel, see docstring
        t_pads.append((lo_t, (n - 1) * f + (k + f - 1) - n_out - lo_t))
    return conv_transpose_subpixel(x, nearest_conv_as_transpose(w, factor), factor, t_pads,
                                   output_size=out_size)



# ----------------------------------------------------------------------------------------------
# Linen layers
# ----------------------------------------------------------------------------------------------


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
                            as_pair(self.kernel_size) + (x.shape[-1], self.features))
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
        if self.method == "nearest" and self.fused:
            y = upsample_conv_nearest(x, kernel, self.factor, self.padding)
        else:
            y = conv2d(upsample(x, self.factor, self.method), kernel, 1, self.padding)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,)).astype(y.dtype)
        return y
