"""The CPU-specific part of conv2d's gradient: the kernel gradient, and which algorithm computes it.

XLA CPU (jaxlib 0.10) differentiates a convolution slowly. conv2d (conv_ops.py) therefore carries a
custom VJP on CPU: dx is the sub-pixel transposed convolution, and dw comes from
`cpu_kernel_gradient` below, which picks between XLA's own kernel-gradient convolution and
`kernel_gradient` (one GEMM per tap) by measurement. Other backends (cuDNN, TPU) keep JAX's rule.

Measured on this project's 2-core AVX-512 machine:
  * With YNNPACK on (XLA's default), XLA lowers the 'kernel-gradient' convolution (batch as the
    contracted feature) to a slow single-threaded loop: 3x3, 32x32x64, batch 32 takes 460 ms against
    36 ms for the forward conv (for the sub-pixel kernel of a transposed conv, 3.1 s against 35 ms).
    One GEMM per tap ([Ci, N] @ [N, Co], N = B*Ho*Wo) takes 56-125 ms.
  * With YNNPACK off (RECOMMENDED_CPU_XLA_FLAGS), XLA's Eigen kernel gradient is faster for stride-1
    k x k convs and slower for the rest; taking the faster one per case cut a U-Net step from 3.2 s
    (all GEMM) or 4.2 s (all XLA) to 2.5 s.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
from jax import lax

from jaxgen.nn.conv_geometry import (CONV_DIMENSION_NUMBERS, IntPair, Padding, as_pair,
                                     resolve_padding)

# XLA CPU (jaxlib 0.10) runs convolutions through YNNPACK by default, single-threaded (measured:
# 1.0 CPU-second per second, vs 1.9 for its Eigen path and PyTorch), which halves conv speed on
# 2 cores. Put this in XLA_FLAGS before JAX starts to use Eigen: conv rows 1.4-2x faster here.
RECOMMENDED_CPU_XLA_FLAGS = "--xla_cpu_experimental_ynn_fusion_type="


def _ynn_disabled() -> bool:
    flags = os.environ.get("XLA_FLAGS", "").split()
    return "--xla_cpu_experimental_ynn_fusion_type=" in flags


def _xla_kernel_gradient_is_fast(ksize, stride, pads) -> bool:
    """Whether XLA's own kernel gradient beats kernel_gradient's GEMMs (measured, see above)."""
    same_size = all(lo + hi <= k - 1 for k, (lo, hi) in zip(ksize, pads))
    return _ynn_disabled() and tuple(stride) == (1, 1) and min(ksize) > 1 and same_size


def lax_conv(x: jax.Array, w: jax.Array, stride: tuple[int, int], pads, dilation: tuple[int, int]
             ) -> jax.Array:
    """XLA's convolution with explicit padding, differentiated by JAX's own rule."""
    return lax.conv_general_dilated(x, w, stride, pads, rhs_dilation=dilation,
                                    dimension_numbers=CONV_DIMENSION_NUMBERS)


def kernel_gradient(x: jax.Array, g: jax.Array, kernel_size: IntPair, stride: IntPair = 1,
                    padding: Padding = "SAME", dilation: IntPair = 1) -> jax.Array:
    """dL/dw of y = conv2d(x, w) given g = dL/dy: x [B,H,W,Ci], g [B,Ho,Wo,Co] -> [kh,kw,Ci,Co]."""
    (kh, kw), (sh, sw), (dh, dw) = as_pair(kernel_size), as_pair(stride), as_pair(dilation)
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


def cpu_kernel_gradient(x: jax.Array, g: jax.Array, w: jax.Array, stride: tuple[int, int], pads,
                        dilation: tuple[int, int]) -> jax.Array:
    """dL/dw of y = lax_conv(x, w, stride, pads, dilation) on CPU, by the faster of XLA's kernel
    gradient and `kernel_gradient` for this shape and XLA_FLAGS: [kh, kw, Ci, Co]."""
    if _xla_kernel_gradient_is_fast(w.shape[:2], stride, pads):
        return jax.vjp(lambda b: lax_conv(x, b, stride, pads, dilation), w)[1](g)[0]
    return kernel_gradient(x, g, w.shape[:2], stride, pads, dilation)
