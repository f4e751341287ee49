"""The convolution layer `Conv`, and the one import path for the whole convolution family.

The family, bottom to top (each module imports only the ones above it in this list):

  conv_geometry.py   padding, output sizes, kernel dilation
  initializers.py    lecun_normal_flat, the initialiser of every jaxgen layer
  conv_grad.py       the CPU-specific part of conv2d's gradient (kernel gradient, XLA flags)
  conv_ops.py        conv2d and the sub-pixel transposed conv (each is built from the other)
  conv_transpose.py  the transposed conv's definition, its other three forms, `ConvTranspose`
  upsample.py        nearest / bilinear up-sampling, `Upsample`, `UpsampleConv`
  conv.py            `Conv` (here), plus every public name of the modules above

Every name that lived in this file before it was split is importable from here (and from
jaxgen.nn): benchmarks, tests and saved code import `jaxgen.nn.conv` as the family's namespace.
Modules inside jaxgen.nn import from the module that defines a name instead, so that nothing below
this file imports it (it imports them all).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxgen.nn.conv_geometry import (IntPair, Padding, as_pair, conv_output_size, dilate_kernel,
                                     resolve_padding, transpose_output_size)
from jaxgen.nn.conv_grad import RECOMMENDED_CPU_XLA_FLAGS, kernel_gradient
from jaxgen.nn.conv_ops import (conv2d, conv_transpose_subpixel, depth_to_space,
                                kernel_to_subpixel, subpixel_to_kernel)
from jaxgen.nn.conv_transpose import (TRANSPOSE_METHODS, ConvTranspose, conv_matrix,
                                      conv_transpose, conv_transpose_lax, conv_transpose_matrix,
                                      conv_transpose_vjp, kernel_from_torch_transpose,
                                      kernel_to_torch_transpose)
from jaxgen.nn.initializers import lecun_normal_flat
from jaxgen.nn.upsample import (UPSAMPLE_METHODS, Upsample, UpsampleConv,
                                nearest_conv_as_transpose, upsample, upsample_conv_nearest)

__all__ = [
    "Conv", "IntPair", "Padding",
    # conv_geometry
    "resolve_padding", "conv_output_size", "transpose_output_size", "dilate_kernel",
    # conv_grad
    "RECOMMENDED_CPU_XLA_FLAGS", "kernel_gradient",
    # conv_ops
    "conv2d", "conv_transpose_subpixel", "kernel_to_subpixel", "subpixel_to_kernel",
    "depth_to_space",
    # conv_transpose
    "TRANSPOSE_METHODS", "ConvTranspose", "conv_transpose", "conv_transpose_lax",
    "conv_transpose_vjp", "conv_transpose_matrix", "conv_matrix", "kernel_to_torch_transpose",
    "kernel_from_torch_transpose",
    # initializers
    "lecun_normal_flat",
    # upsample
    "UPSAMPLE_METHODS", "Upsample", "UpsampleConv", "upsample", "nearest_conv_as_transpose",
    "upsample_conv_nearest",
]


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
                            as_pair(self.kernel_size) + (x.shape[-1], self.features))
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
        y = conv2d(x, kernel, self.strides, self.padding, self.dilation)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,)).astype(y.dtype)
        return y

