"""Geometry of convolutions: padding, output sizes and kernel dilation, shared by every conv form.

Layout everywhere: activations NHWC `[B, H, W, C]`, kernels HWIO `[kh, kw, C_in, C_out]`.
A transposed convolution is described by the *forward* convolution it transposes (see
conv_transpose.py): it maps the forward conv's output size (Ho, Wo) back to its input size (H, W).
"""
from __future__ import annotations

from typing import Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

IntPair = Union[int, Sequence[int]]
# 'SAME' | 'VALID' | p (same p on all four sides, PyTorch style) | ((top, bottom), (left, right))
Padding = Union[str, int, Sequence[Sequence[int]]]
# lax.conv_general_dilated's dimension numbers for NHWC activations and HWIO kernels.
CONV_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def as_pair(v: IntPair) -> tuple[int, int]:
    """An int or an (h, w) pair -> an (h, w) pair of ints."""
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
        for n, k, s, d in zip(as_pair(in_size), as_pair(kernel_size), as_pair(stride),
                              as_pair(dilation)):
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
                 for n, k, s, d, (lo, hi) in zip(as_pair(in_size), as_pair(kernel_size),
                                                 as_pair(stride), as_pair(dilation), pads))


def transpose_output_size(in_size: IntPair, kernel_size: IntPair, stride: IntPair = 1,
                          padding: Padding = "SAME", dilation: IntPair = 1,
                          output_padding: IntPair = 0) -> tuple[int, int]:
    """Default (H, W) that the transposed conv of a (Ho, Wo) map produces.

    SAME: H = Ho * s (the largest H with ceil(H / s) = Ho: a clean x s up-sampling, as lax does).
    VALID / explicit: H = (Ho - 1) s + d(k - 1) + 1 - lo - hi (the smallest, as PyTorch does).
    `output_padding` (< s) adds to it, as in PyTorch.
    """
    out = []
    for i, (n, k, s, d, op) in enumerate(zip(as_pair(in_size), as_pair(kernel_size),
                                             as_pair(stride), as_pair(dilation),
                                             as_pair(output_padding))):
        if isinstance(padding, str) and padding.upper() == "SAME":
            out.append(n * s + op)
        else:
            lo, hi = resolve_padding(padding, (1, 1), kernel_size)[i]
            out.append((n - 1) * s + d * (k - 1) + 1 - lo - hi + op)
    return tuple(out)  # type: ignore[return-value]


def transpose_geometry(y: jax.Array, w: jax.Array, stride: IntPair, padding: Padding,
                       dilation: IntPair, output_size: IntPair | None):
    """((H, W), forward conv's explicit padding) of the transposed conv of y [B, Ho, Wo, C_y] with
    the forward kernel w [kh, kw, C_x, C_y]; checks that conv2d maps (H, W) to y's (Ho, Wo)."""
    if y.ndim != 4 or w.ndim != 4 or y.shape[-1] != w.shape[3]:
        raise ValueError(f"expected y [B, Ho, Wo, C_y] and the forward kernel [kh, kw, C_x, C_y]; "
                         f"got y {y.shape} and w {w.shape}.")
    ksize, in_y = w.shape[:2], y.shape[1:3]
    size = as_pair(output_size) if output_size is not None else transpose_output_size(
        in_y, ksize, stride, padding, dilation)
    pads = resolve_padding(padding, size, ksize, stride, dilation)
    if conv_output_size(size, ksize, stride, pads, dilation) != tuple(in_y):
        raise ValueError(f"output_size {size} is not a size that conv2d (kernel {tuple(ksize)}, "
                         f"stride {stride}, padding {padding}) maps to the input's {tuple(in_y)}.")
    return size, pads


def inflated_padding(size, in_size, ksize, stride, dilation, pads) -> list[tuple[int, int]]:
    """Padding of the stride-1 conv over the zero-inflated input that computes A^T y.

    XLA's transposed conv inserts s - 1 zeros between the input pixels and runs a stride-1 conv
    with the flipped kernel. Per axis (k_d = d(k-1)+1), output i reads inflated position
    i + lo - k_d + 1 + j for tap j, so that conv's padding is
    (k_d - 1 - lo, H + lo - 1 - (Ho - 1) s), for the forward conv's padding (lo, hi), output size
    `size` = H and input size `in_size` = Ho.
    """
    return [(d * (k - 1) - lo, n + lo - 1 - (n_y - 1) * s) for n, n_y, k, s, d, (lo, _) in
            zip(size, in_size, ksize, as_pair(stride), as_pair(dilation), pads)]


def dilate_kernel(w: jax.Array, dilation: IntPair) -> jax.Array:
    """[kh,kw,I,O] -> [d(kh-1)+1, d(kw-1)+1, I, O] with d-1 zeros between taps (same conv, d=1)."""
    dy, dx = as_pair(dilation)
    if (dy, dx) == (1, 1):
        return w
    kh, kw = w.shape[:2]
    out = jnp.zeros((dy * (kh - 1) + 1, dx * (kw - 1) + 1) + w.shape[2:], w.dtype)
    return out.at[::dy, ::dx].set(w)
