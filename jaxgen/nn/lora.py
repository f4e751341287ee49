"""LoRA: low-rank adapters as a transform of a params tree (Hu et al. 2021, "LoRA: Low-Rank
Adaptation of Large Language Models").

A frozen kernel W is adapted as  W' = W + (alpha / r) A B  (the paper's eq. 3, h = W0 x + B A x,
written here in Flax's row convention y = x W), with A [in, r], B [r, out] and r << min(in, out).
Every kernel is read as the matrix [in, out] with `out` its last axis: a Dense or attention
projection kernel [in, out] as it is, a conv kernel [kh, kw, cin, cout] as [kh*kw*cin, cout] (the
im2col view: the conv is that matmul over patches, so the adapter is a conv with r output channels
followed by a 1x1 conv), an embedding table [vocab, dim] as it is.

LoRA is a transform of the params, not of the modules, so every jaxgen model gets it unchanged:

    adapters = lora.init_adapters(base, rng, rank=4, targets="dense")
    s = lora.scale(alpha=4.0, rank=4)
    loss_of_adapters = lambda ad: loss(lora.merge(base, ad, s), batch)   # base: a constant
    grads = jax.grad(loss_of_adapters)(adapters)                         # adapters only

B starts at zero, so the adapted model is the base at init (sec. 4.1); A is Gaussian with variance
1/in, so x A keeps the scale of x. The optimizer sees only the adapters: a rank-4 adapter of a
[288, 64] conv kernel is 1,408 numbers against its 18,432. `merge` gives an ordinary params tree
for sampling and export, so the adapted model costs nothing extra at inference.

The adapters pytree mirrors the params tree but holds only the adapted leaves, each as
{"a": A [in, r], "b": B [r, out]}. `save` / `load` write and read it on its own (a folder with
adapters.msgpack and lora.json: rank, alpha, targets, parameter count and the base's fingerprint).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, traverse_util

from jaxgen.errors import UserError

PyTree = Any
# (path "a/b/kernel", shape) -> whether the leaf gets an adapter
Predicate = Callable[[str, tuple[int, ...]], bool]
ADAPTERS_FILE = "adapters.msgpack"
META_FILE = "lora.json"
# The Dense layers of jaxgen.nn.attention's MultiHeadAttention.
ATTENTION_PROJECTIONS = ("query", "key", "value", "out")


class AdapterMismatchError(UserError, ValueError):
    """LoRA adapters that do not fit a params tree (a missing path or another shape)."""


# ---- targets -------------------------------------------------------------------------------------


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _parent(path: str) -> str:
    parts = path.split("/")
    return parts[-2] if len(parts) > 1 else ""


# Named sets of leaves, by what Flax calls them: Dense and Conv weights are "kernel" ([in, out] and
# [kh, kw, cin, cout]), Embed tables "embedding". Attention projections are Dense layers, so "dense"
# includes them.
PRESETS: dict[str, Predicate] = {
    "dense": lambda path, shape: _name(path) == "kernel" and len(shape) == 2,
    "attention": lambda path, shape: (_name(path) == "kernel" and len(shape) == 2
                                      and _parent(path) in ATTENTION_PROJECTIONS),
    "conv": lambda path, shape: _name(path) == "kernel" and len(shape) >= 3,
    "embedding": lambda path, shape: _name(path) == "embedding" and len(shape) == 2,
}


def predicate(targets: str | Predicate) -> Predicate:
    """The leaf selector that `targets` names: a callable (path, shape) -> bool as it is; a string of
    comma-separated PRESETS names ("dense", "dense,conv", "attention,embedding") as their union; any
    other string as a regular expression searched in the "/"-joined path ("dec\\d.*kernel$").
    Leaves of fewer than two axes (biases, norm scales) are never adapted: they have no low-rank form."""
    if callable(targets):
        chosen = targets
    elif not isinstance(targets, str) or not targets.strip():
        raise ValueError(f"LoRA targets must be preset names ({', '.join(PRESETS)}), a regular expression "
                         f"over param paths, or a predicate, not {targets!r}.")
    else:
        names = [t.strip() for t in targets.split(",")]
        if all(n in PRESETS for n in names):
            chosen = lambda path, shape: any(PRESETS[n](path, shape) for n in names)  # noqa: E731
        else:
            try:
                pattern = re.compile(targets)
            except re.error as e:
                raise ValueError(f"LoRA targets {targets!r} is neither preset names ({', '.join(PRESETS)}) nor a "
                                 f"valid regular expression ({e}).") from None
            chosen = lambda path, shape: pattern.search(path) is not None  # noqa: E731
    return lambda path, shape: len(shape) >= 2 and bool(chosen(path, tuple(shape)))


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def path_str(keypath) -> str:
    """A jax key path (DictKey('unet'), DictKey('stem'), DictKey('kernel')) as "unet/stem/kernel"."""
    return "/".join(_key_name(k) for k in keypath)


def leaves_by_path(tree: PyTree) -> dict[str, Any]:
    """{"unet/stem/kernel": leaf, ...} for every leaf of a params tree."""
    return {path_str(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def select(params: PyTree, targets: str | Predicate) -> list[str]:
    """The paths of the leaves of `params` that `targets` (see `predicate`) adapts, sorted."""
    chosen = predicate(targets)
    paths = sorted(p for p, leaf in leaves_by_path(params).items() if chosen(p, tuple(np.shape(leaf))))
    if not paths:
        raise ValueError(f"LoRA targets {targets!r} select no kernel of these params (leaves of two or more "
                         f"axes); try the presets {', '.join(PRESETS)} or a regular expression over their paths.")
    return paths


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """A kernel's shape as the matrix LoRA factors: (in, out) = (product of all axes but the last, last)."""
    return math.prod(shape[:-1]), shape[-1]


# ---- adapters --------------------------------------------------------------------------------------


def init_adapters(params: PyTree, rng: jax.Array, rank: int, targets: str | Predicate = "dense") -> PyTree:
    """Adapters for the leaves of `params` that `targets` selects: {path...: {"a": A [in, r] ~ N(0, 1/in),
    "b": B [r, out] = 0}} in the params' nesting and dtype. Only shapes are read from `params`
    (abstract values do). With B = 0 the adapted model equals the base until B moves."""
    if not (isinstance(rank, int) and rank >= 1):
        raise ValueError(f"LoRA rank must be a positive integer, not {rank!r}.")
    leaves = leaves_by_path(params)
    flat = {}
    for i, path in enumerate(select(params, targets)):
        shape, dtype = tuple(np.shape(leaves[path])), leaves[path].dtype
        n_in, n_out = matrix_shape(shape)
        key = jax.random.fold_in(rng, i)  # one stream per adapted kernel, in the sorted path order
        keys = tuple(path.split("/"))
        flat[keys + ("a",)] = jax.random.normal(key, (n_in, rank), dtype) / jnp.sqrt(jnp.asarray(n_in, dtype))
        flat[keys + ("b",)] = jnp.zeros((rank, n_out), dtype)
    return traverse_util.unflatten_dict(flat)


def pairs(adapters: PyTree) -> dict[str, tuple[Any, Any]]:
    """{"unet/stem/kernel": (A, B), ...} of an adapters tree."""
    flat = traverse_util.flatten_dict(adapters, sep="/")
    found = {}
    for path in flat:
        base, _, part = path.rpartition("/")
        if part not in ("a", "b") or base + "/a" not in flat or base + "/b" not in flat:
            raise AdapterMismatchError(f"{path} is not part of a LoRA adapter (each adapted kernel holds an "
                                       f"'a' [in, r] and a 'b' [r, out]).")
        found[base] = (flat[base + "/a"], flat[base + "/b"])
    return found


def rank_of(adapters: PyTree) -> int:
    """The rank r shared by the adapters (the columns of every A)."""
    ranks = {int(np.shape(a)[1]) for a, _ in pairs(adapters).values()}
    if len(ranks) != 1:
        raise AdapterMismatchError(f"LoRA adapters must share one rank, not {sorted(ranks)}.")
    return ranks.pop()


def num_params(adapters: PyTree) -> int:
    """The number of trainable numbers in `adapters`: sum over adapted kernels of r (in + out)."""
    return int(sum(np.size(x) for x in jax.tree.leaves(adapters)))


def scale(alpha: float, rank: int) -> float:
    """The factor alpha / r of the update (sec. 4.1): with alpha fixed, changing r needs no new
    learning rate, since Adam's steps on B have a size independent of r."""
    return float(alpha) / float(rank)


def check_fits(params: PyTree, adapters: PyTree) -> None:
    """AdapterMismatchError, in one sentence, unless every adapter names a leaf of `params` whose
    matrix shape is [A's rows, B's columns], with A [in, r] and B [r, out] of one rank."""
    shapes = {p: tuple(np.shape(leaf)) for p, leaf in leaves_by_path(params).items()}
    for path, (a, b) in sorted(pairs(adapters).items()):
        a_shape, b_shape = tuple(np.shape(a)), tuple(np.shape(b))
        if path not in shapes:
            raise AdapterMismatchError(f"LoRA adapters do not fit these params: the params have no {path} "
                                       f"(the adapters were made for another model).")
        shape = shapes[path]
        ok = (len(shape) >= 2 and len(a_shape) == 2 and len(b_shape) == 2 and a_shape[1] == b_shape[0]
              and (a_shape[0], b_shape[1]) == matrix_shape(shape))
        if not ok:
            raise AdapterMismatchError(
                f"LoRA adapters do not fit these params: {path} is {list(shape)} here, but its adapter is "
                f"A {list(a_shape)} @ B {list(b_shape)} (it needs A [in, r], B [r, out] with "
                f"[in, out] = {list(matrix_shape(shape)) if len(shape) >= 2 else 'a kernel of two or more axes'}).")


def merge(params: PyTree, adapters: PyTree, scale: float) -> PyTree:
    """`params` with every adapted kernel W replaced by W + scale * (A @ B) reshaped to W's shape;
    the other leaves pass through (the same arrays). Same tree structure and dtypes as `params`.

    Differentiable in `adapters` (and in `params`, though a LoRA step never asks for that): inside
    a jitted loss, gradients reach the adapters through this sum and nowhere else."""
    check_fits(params, adapters)  # shapes are static: under jit this runs once, at trace time
    factors = pairs(adapters)

    def adapt(keypath, w):
        path = path_str(keypath)
        if path not in factors:
            return w
        a, b = factors[path]
        # HIGHEST: on TPU the default precision would round A and B to bfloat16 before the product.
        delta = jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST).reshape(w.shape)
        return w + (scale * delta).astype(w.dtype)

    return jax.tree_util.tree_map_with_path(adapt, params)


def adapter_grad_fn(grad_fn: Callable, base: PyTree, scale: float) -> Callable:
    """A gradient function of the params, grad_fn(params, inputs) -> (grads, *rest), as one of the
    adapters: (adapters, inputs) -> (adapter grads, *rest), with `base` frozen.

    The chain rule through `merge`: W' = W + s A B gives dL/dA = s G B^T and dL/dB = s A^T G for
    G = dL/dW' (as a matrix [in, out]), exactly what the pullback of merge computes. A task that
    computes its gradients inside its own loss (jaxgen's loss_and_grads convention) thereby trains
    adapters without a change; under jit the gradients of the leaves no adapter touches (biases,
    norms) are unused and compiled away. G itself is still formed for each adapted kernel, as in a
    full fine-tune: what LoRA saves here is optimizer state and checkpoint size, not step compute."""
    def adapted(adapters, inputs):
        merged, pullback = jax.vjp(lambda ad: merge(base, ad, scale), adapters)
        grads, *rest = grad_fn(merged, inputs)
        (adapter_grads,) = pullback(grads)
        return (adapter_grads, *rest)
    return adapted


# ---- fingerprints, saving and loading -----------------------------------------------------------


def fingerprint(params: PyTree) -> str:
    """sha256 over every leaf's path, dtype, shape and bytes, in path order: the same for the same
    numbers however the tree was loaded (dict order, device, Orbax or msgpack)."""
    digest = hashlib.sha256()
    for path, leaf in sorted(leaves_by_path(params).items()):
        x = np.ascontiguousarray(jax.device_get(leaf))
        digest.update(f"{path}|{x.dtype}|{x.shape}|".encode())
        digest.update(x.tobytes())
    return digest.hexdigest()


def save(directory: str, adapters: PyTree, alpha: float, targets: str, info: dict | None = None) -> str:
    """Writes `adapters` to `directory` (adapters.msgpack) with lora.json: rank, alpha, targets, the
    parameter count, the adapted paths, the msgpack's sha256 and `info` (e.g. base: {fingerprint,
    init_from, step}, step). Atomic: a temporary folder renamed into place, the old one removed after."""
    host = jax.tree.map(np.asarray, jax.device_get(adapters))
    blob = serialization.msgpack_serialize(host)
    meta = {"rank": rank_of(host), "alpha": float(alpha), "targets": targets, "num_params": num_params(host),
            "paths": sorted(pairs(host)), "sha256": hashlib.sha256(blob).hexdigest(), **(info or {})}
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".lora-", dir=parent)
    try:
        with open(os.path.join(tmp, ADAPTERS_FILE), "wb") as f:
            f.write(blob)
        with open(os.path.join(tmp, META_FILE), "w") as f:
            json.dump(meta, f, indent=2, sort_keys=True)
        os.chmod(tmp, 0o755)  # mkdtemp's folder is private
        old = None
        if os.path.isdir(directory):
            old = tmp + ".old"
            os.replace(directory, old)
        os.replace(tmp, directory)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load(directory: str, base: PyTree | None = None, same_base: bool = True) -> tuple[PyTree, dict]:
    """(adapters as numpy arrays, meta) from a folder `save` wrote, its sha256 checked. With `base`,
    also checks that the adapters fit it and (same_base) that it is the base they were trained on,
    by fingerprint; each failure is one sentence (AdapterMismatchError, a ValueError)."""
    try:
        with open(os.path.join(directory, META_FILE)) as f:
            meta = json.load(f)
        with open(os.path.join(directory, ADAPTERS_FILE), "rb") as f:
            blob = f.read()
    except (OSError, ValueError) as e:
        raise ValueError(f"{directory} holds no readable LoRA adapters ({type(e).__name__}: {e}).") from None
    if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
        raise ValueError(f"{directory}: {ADAPTERS_FILE} does not match the sha256 in {META_FILE} "
                         f"(damaged or replaced).")
    adapters = serialization.msgpack_restore(blob)
    if base is not None:
        check_fits(base, adapters)
        expected = (meta.get("base") or {}).get("fingerprint")
        if same_base and expected and expected != fingerprint(base):
            raise AdapterMismatchError(
                f"the LoRA adapters in {directory} were trained on base {expected[:12]} "
                f"({(meta.get('base') or {}).get('init_from', 'unknown source')}), not on these params "
                f"({fingerprint(base)[:12]}); pass that base, or same_base=False to apply them anyway.")
    return adapters, meta
