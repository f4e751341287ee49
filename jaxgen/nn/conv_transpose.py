"""Transposed convolution, defined as the transpose of a convolution matrix, in four forms.

Write the stride-s convolution `y = conv2d(x, w, stride, padding)` as `vec(y) = A(w) vec(x)` with A
of shape `[Ho*Wo*C_y, H*W*C_x]`; then

    conv_transpose(y, w, stride, padding) := A(w)^T vec(y),           shape [B, H, W, C_x].

So `w` is the kernel of the *forward* convolution, `[kh, kw, C_x, C_y]` (C_x = channels the
transposed conv produces, C_y = channels it consumes); PyTorch's `conv_transpose2d` weight is
exactly `w.transpose(3, 2, 0, 1)`, and the transposed conv maps back to the input size of the
forward conv (5x5 input, 3x3 kernel, stride 2, VALID gives 2x2; the transpose maps 2x2 back to
5x5). Several H give the same Ho when s > 1 (H = 5 and 6 both give 2 above); `output_size` picks
one, like PyTorch's `output_padding`. The four forms compute A^T y in different ways and agree to
float rounding:

  conv_transpose_lax       lax.conv_transpose: stride-1 conv of the zero-inflated input (XLA's way)
  conv_transpose_vjp       VJP of the conv w.r.t. x ("backprop through a CNN"): A^T y by definition
  conv_transpose_matrix    builds A explicitly and multiplies (teaching and tests, small sizes only)
  conv_transpose_subpixel  s^2 phase kernels as stride-1 conv(s), then depth-to-space (fast default;
                           defined in conv_ops.py beside conv2d, whose CPU gradient it is)

`conv_transpose` picks a form by name, and the `ConvTranspose` layer runs it.
Layout: activations NHWC `[B, H, W, C]`, kernels HWIO `[kh, kw, C_in, C_out]`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

from jaxgen.nn.conv_geometry import (CONV_DIMENSION_NUMBERS, IntPair, Padding, as_pair,
                                     conv_output_size, inflated_padding, resolve_padding,
                                     transpose_geometry, transpose_output_size)
from jaxgen.nn.conv_grad import lax_conv
from jaxgen.nn.conv_ops import conv_transpose_subpixel
from jaxgen.nn.initializers import lecun_normal_flat

TRANSPOSE_METHODS = ("subpixel", "lax", "vjp", "matrix")


# ----------------------------------------------------------------------------------------------
# The forms of A^T y (the sub-pixel one is in conv_ops.py)
# ----------------------------------------------------------------------------------------------


def conv_transpose_lax(y: jax.Array, w: jax.Array, stride: IntPair = 1, padding: Padding = "SAME",
                       dilation: IntPair = 1, output_size: IntPair | None = None) -> jax.Array:
    """lax.conv_transpose: y [B,Ho,Wo,Cy], w [kh,kw,Cx,Cy] (forward kernel) -> [B,H,W,Cx].

    XLA inserts s - 1 zeros between input pixels and runs a stride-1 conv with the flipped kernel.
    Its padding (`inflated_padding`) is passed explicitly so the result is the exact adjoint of
    conv2d (lax's 'SAME' rule differs from it for some shapes).
    """
    (h, wd), pads = transpose_geometry(y, w, stride, padding, dilation, output_size)
    lax_pads = inflated_padding((h, wd), y.shape[1:3], w.shape[:2], stride, dilation, pads)
    return lax.conv_transpose(y, w, as_pair(stride), lax_pads, rhs_dilation=as_pair(dilation),
                              dimension_numbers=CONV_DIMENSION_NUMBERS, transpose_kernel=True)


def conv_transpose_vjp(y: jax.Array, w: jax.Array, stride: IntPair = 1, padding: Padding = "SAME",
                       dilation: IntPair = 1, output_size: IntPair | None = None) -> jax.Array:
    """A^T y as the vector-Jacobian product of x -> conv(x, w): exactly what backprop computes.

    Differentiates the raw lax convolution, so this is JAX's own transpose rule (conv2d's custom
    VJP would route it to the sub-pixel form).
    """
    (h, wd), pads = transpose_geometry(y, w, stride, padding, dilation, output_size)
    x0 = jnp.zeros((y.shape[0], h, wd, w.shape[2]), y.dtype)
    _, pullback = jax.vjp(lambda x: lax_conv(x, w, as_pair(stride), pads, as_pair(dilation)), x0)
    return pullback(y)[0]


def conv_matrix(w: jax.Array, in_size: IntPair, stride: IntPair = 1, padding: Padding = "SAME",
                dilation: IntPair = 1) -> jax.Array:
    """The dense matrix A with vec(conv2d(x, w)) = A vec(x): [Ho*Wo*Co, H*W*Ci] (row-major NHWC).

    A[(oy,ox,co), (iy,ix,ci)] = sum over taps with iy = oy*s + ky*d - lo (same for x) of
    w[ky,kx,ci,co]. Built from two 0/1 selection tensors S[o, k, i] = [i == o*s + k*d - lo]; taps
    that land in the padding select nothing, which is zero padding. Memory grows as (H W)^2.
    """
    (h, wd), ksize = as_pair(in_size), w.shape[:2]
    pads = resolve_padding(padding, (h, wd), ksize, stride, dilation)
    ho, wo = conv_output_size((h, wd), ksize, stride, pads, dilation)
    sel = []
    for n, n_out, k, s, d, (lo, _) in zip((h, wd), (ho, wo), ksize, as_pair(stride),
                                          as_pair(dilation), pads):
        o, t, i = np.ogrid[:n_out, :k, :n]
        sel.append(jnp.asarray(i == o * s + t * d - lo, w.dtype))
    a = jnp.einsum("akp,blq,klcd->abdpqc", sel[0], sel[1], w)
    return a.reshape(ho * wo * w.shape[3], h * wd * w.shape[2])


def conv_transpose_matrix(y: jax.Array, w: jax.Array, stride: IntPair = 1,
                          padding: Padding = "SAME", dilation: IntPair = 1,
                          output_size: IntPair | None = None) -> jax.Array:
    """A^T y with A = conv_matrix(...) built explicitly. For teaching and tests only."""
    (h, wd), pads = transpose_geometry(y, w, stride, padding, dilation, output_size)
    a = conv_matrix(w, (h, wd), stride, pads, dilation)
    z = y.reshape(y.shape[0], -1) @ a  # rows of y times A == (A^T y) per example
    return z.reshape(y.shape[0], h, wd, w.shape[2])


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
# The layer, and its kernel in PyTorch's layout
# ----------------------------------------------------------------------------------------------


def kernel_to_torch_transpose(w: jax.Array) -> np.ndarray:
    """ConvTranspose kernel [kh,kw,Cout,Cin] -> torch conv_transpose2d weight [Cin,Cout,kh,kw]."""
    return np.asarray(w).transpose(3, 2, 0, 1)


def kernel_from_torch_transpose(wt: np.ndarray) -> jax.Array:
    """torch conv_transpose2d weight [Cin,Cout,kh,kw] -> ConvTranspose kernel [kh,kw,Cout,Cin]."""
    return jnp.asarray(np.asarray(wt).transpose(2, 3, 1, 0))


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
        ksize = as_pair(self.kernel_size)
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

