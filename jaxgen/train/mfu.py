"""Model FLOPs utilization: FLOPs of a compiled step, the device's peak rate, and their ratio.

MFU = (FLOPs a step does) x (steps per second) / (devices x peak FLOP/s of one device). The FLOPs
are XLA's count for the program (`cost_analysis()`), which is one device's share of an SPMD or pmap
step; the peak is a datasheet number per device kind (PEAK_FLOPS) for the dtype the step's matmuls
and convolutions run in, or, on CPU, the fp32 matmul rate measured in this process.

XLA's cost analysis counts the body of a `while` loop (`lax.scan`, `fori_loop`) once, whatever its
trip count: a GAN step that scans over its discriminator updates, or a step accumulating gradients
over micro-batches, would look k times cheaper than it is. `loop_correction` adds back the matmul
and convolution FLOPs of the iterations that count leaves out, read from the step's jaxpr.
"""
from __future__ import annotations

import functools
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Dense (no structured sparsity) peak TFLOP/s of ONE JAX device, per dtype of the step's matmuls.
# 'float32' is the rate at JAX's default matmul precision, which is what a float32 step runs at:
# on NVIDIA Ampere/Hopper that is TF32 on the tensor cores, on TPU one bfloat16 pass (so the bf16
# rate). Each entry: (substrings of device.device_kind, lowercase, all must occur; peaks).
# Sources (vendor datasheets; the sparsity figures there are 2x these):
#   H100 SXM5: NVIDIA H100 Tensor Core GPU datasheet: BF16 989.4 dense, TF32 494.7 dense (FP32 non-
#     tensor 66.9). PCIe: BF16 756.5, TF32 378. NVL: BF16 835.5, TF32 417.5.
#   H200 SXM: NVIDIA H200 datasheet: same compute as the H100 SXM (BF16 1,979 / TF32 989 sparse).
#     H200 NVL: BF16 1,671 / TF32 835 sparse.
#   A100 (SXM4 and PCIe, 40 and 80 GB): NVIDIA A100 datasheet: BF16 312, TF32 156 (FP32 19.5).
#   TPU v4: Google Cloud TPU v4 system architecture page: 275 bf16 TFLOP/s per chip (one JAX
#     device per chip, megacore).
#   TPU v5e: Cloud TPU v5e page: 197 bf16 TFLOP/s per chip.
#   TPU v5p: Cloud TPU v5p page: 459 bf16 TFLOP/s per chip (megacore: one device per chip).
#   TPU v6e (Trillium): Cloud TPU v6e page: 918 bf16 TFLOP/s per chip.
PEAK_FLOPS: list[tuple[tuple[str, ...], str, dict[str, float]]] = [
    (("h100", "pcie"), "H100 PCIe", {"bfloat16": 756.5e12, "float32": 378e12}),
    (("h100", "nvl"), "H100 NVL", {"bfloat16": 835.5e12, "float32": 417.5e12}),
    (("h100",), "H100 SXM", {"bfloat16": 989.4e12, "float32": 494.7e12}),
    (("h200", "nvl"), "H200 NVL", {"bfloat16": 835.5e12, "float32": 417.5e12}),
    (("h200",), "H200", {"bfloat16": 989.4e12, "float32": 494.7e12}),
    (("a100",), "A100", {"bfloat16": 312e12, "float32": 156e12}),
    (("tpu v4",), "TPU v4", {"bfloat16": 275e12, "float32": 275e12}),
    (("tpu v5 lite",), "TPU v5e", {"bfloat16": 197e12, "float32": 197e12}),
    (("tpu v5e",), "TPU v5e", {"bfloat16": 197e12, "float32": 197e12}),
    (("tpu v5",), "TPU v5p", {"bfloat16": 459e12, "float32": 459e12}),  # after the 'lite' rows
    (("tpu v6",), "TPU v6e", {"bfloat16": 918e12, "float32": 918e12}),
]


def peak_entry(device_kind: str) -> tuple[str, dict[str, float]] | None:
    """(canonical name, {dtype: FLOP/s}) of a device kind string, or None when it is not in the table."""
    kind = device_kind.lower()
    for needles, name, peaks in PEAK_FLOPS:
        if all(n in kind for n in needles):
            return name, peaks
    return None


def device_peak(device: Any, dtype: str = "float32", num_devices: int = 1) -> float | None:
    """Peak FLOP/s of one `device` (a jax Device) for a step computing in `dtype` ('float32' or
    'bfloat16'); None for an accelerator the table does not know. On CPU: the measured fp32 matmul
    rate of this process divided by `num_devices`, the CPU devices a step runs on (fake devices
    share the same cores, so together they have the machine's rate, not one each)."""
    if device.platform == "cpu":
        return cpu_matmul_rate() / max(1, num_devices)
    entry = peak_entry(getattr(device, "device_kind", ""))
    return None if entry is None else entry[1].get(str(dtype))


@functools.lru_cache(maxsize=None)
def cpu_matmul_rate(n: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of XLA's fp32 [n, n] @ [n, n] matmul on the CPU (2 n^3 FLOPs a call), best of
    `repeats` timed calls after a warm-up; measured once per process (about 0.2 s on 2 cores).

    The best call, not the median: on a shared machine a slow call measures the other processes,
    and a low peak would overstate every MFU computed against it.
    """
    cpu = jax.local_devices(backend="cpu")[0]
    a = jax.device_put(np.random.default_rng(0).standard_normal((n, n), dtype=np.float32), cpu)
    f = jax.jit(jnp.matmul)
    f(a, a).block_until_ready()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(a, a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


def step_flops(compiled: Any) -> float | None:
    """FLOPs XLA counts for one call of a compiled (or lowered) program: one device's share of an
    SPMD / pmap program. `cost_analysis()` returns a dict in current JAX and a list with one dict per
    program in older versions; None when the backend gives no count. Loop bodies count once (see
    the module docstring)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends / runtimes do not implement it
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops is not None and flops > 0 else None


# ---- loop correction from the jaxpr --------------------------------------------------------------


def _dot_flops(eqn) -> float:
    (lc, rc), (lb, _) = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    out = eqn.outvars[0].aval.shape
    return 2.0 * math.prod(out) * math.prod(lhs[d] for d in lc)


def _conv_flops(eqn) -> float:
    # 2 x (output elements) x (kernel taps x input features per group): every output element is
    # one dot product over the kernel window (zero taps of padding and dilation included).
    rhs = eqn.invars[1].aval.shape
    dn = eqn.params["dimension_numbers"]
    out_feature_dim = dn.rhs_spec[0]
    per_output = math.prod(rhs) / rhs[out_feature_dim]
    return 2.0 * math.prod(eqn.outvars[0].aval.shape) * per_output


def _sub_jaxprs(eqn):
    for v in eqn.params.values():
        for j in (v if isinstance(v, (list, tuple)) else [v]):
            inner = getattr(j, "jaxpr", j)
            if hasattr(inner, "eqns"):
                yield inner


def matmul_flops(jaxpr: Any, count_trips: bool = True) -> float:
    """FLOPs of the dot_general and conv_general_dilated ops of a (closed) jaxpr, 2 per
    multiply-add, with every `scan` body counted `length` times (count_trips) or once (as XLA does).
    A `cond` counts its costliest branch, a `while` its body once (its trip count is unknown)."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += _dot_flops(eqn)
        elif name == "conv_general_dilated":
            total += _conv_flops(eqn)
        elif name == "cond":
            total += max((matmul_flops(b, count_trips) for b in eqn.params["branches"]), default=0.0)
        else:
            inner = sum(matmul_flops(j, count_trips) for j in _sub_jaxprs(eqn))
            if name == "scan" and count_trips:
                inner *= eqn.params["length"]
            total += inner
    return total


def loop_correction(jaxpr: Any) -> float:
    """Matmul / conv FLOPs that XLA's count misses: those of the 2nd..n-th iterations of scans."""
    return matmul_flops(jaxpr, True) - matmul_flops(jaxpr, False)


def utilization(flops_per_step: float, steps_per_s: float, num_devices: int,
                peak: float | None) -> dict[str, float]:
    """{"tflops_per_device": achieved TFLOP/s of one device, "mfu": its fraction of `peak`} for a
    step of `flops_per_step` FLOPs over all `num_devices` devices (global, not per device) at
    `steps_per_s`; "mfu" is left out when the peak is unknown."""
    per_device = flops_per_step * steps_per_s / max(1, num_devices)
    out = {"tflops_per_device": per_device / 1e12}
    if peak:
        out["mfu"] = per_device / peak
    return out
