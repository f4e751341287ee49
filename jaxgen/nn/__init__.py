"""Building blocks: convolution and transposed convolution (four equivalent forms), parameter-free
up-sampling, attention, and the U-Net. Linen modules plus the pure functions they are made of."""
from jaxgen.nn.attention import (GroupNorm, MultiHeadAttention, SpatialAttention,
                                 dot_product_attention, group_norm)
from jaxgen.nn.conv import (RECOMMENDED_CPU_XLA_FLAGS, TRANSPOSE_METHODS, UPSAMPLE_METHODS, Conv,
                            ConvTranspose, Upsample, UpsampleConv, conv2d, conv_matrix,
                            conv_output_size, conv_transpose, conv_transpose_lax,
                            conv_transpose_matrix, conv_transpose_subpixel, conv_transpose_vjp,
                            depth_to_space, dilate_kernel, kernel_from_torch_transpose,
                            kernel_gradient, kernel_to_subpixel, kernel_to_torch_transpose,
                            lecun_normal_flat, nearest_conv_as_transpose, resolve_padding,
                            subpixel_to_kernel, transpose_output_size, upsample,
                            upsample_conv_nearest)
from jaxgen.nn.unet import UPSAMPLE_MODES, ResBlock, UNet, sinusoidal_embedding

__all__ = [
    "Conv", "ConvTranspose", "Upsample", "UpsampleConv", "conv2d", "conv_transpose",
    "conv_transpose_lax", "conv_transpose_vjp", "conv_transpose_matrix", "conv_transpose_subpixel",
    "conv_matrix", "kernel_to_subpixel", "subpixel_to_kernel", "depth_to_space", "dilate_kernel",
    "kernel_gradient", "kernel_to_torch_transpose", "kernel_from_torch_transpose",
    "nearest_conv_as_transpose", "upsample", "upsample_conv_nearest", "resolve_padding",
    "conv_output_size", "transpose_output_size", "lecun_normal_flat", "TRANSPOSE_METHODS",
    "UPSAMPLE_METHODS", "RECOMMENDED_CPU_XLA_FLAGS",
    "MultiHeadAttention", "SpatialAttention", "dot_product_attention", "group_norm", "GroupNorm",
    "UNet", "ResBlock", "sinusoidal_embedding", "UPSAMPLE_MODES",
]
