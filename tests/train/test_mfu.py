"""FLOPs, peaks and MFU (jaxgen.train.mfu) and their wiring into the training loop's metrics."""
import json
import os
import types

import jax
import jax.numpy as jnp
import pytest

from jaxgen.train import mfu


def test_cost_analysis_flops_of_a_matmul_are_2mnk():
    m, n, k = 64, 48, 32
    lowered = jax.jit(jnp.matmul).lower(jnp.ones((m, k)), jnp.ones((k, n)))
    for program in (lowered, lowered.compile()):
        # XLA counts 2 per multiply-add; allow 1 % for bookkeeping ops a backend may add.
        assert mfu.step_flops(program) == pytest.approx(2 * m * n * k, rel=0.01)


def test_step_flops_reads_the_dict_and_the_list_forms():
    as_dict = types.SimpleNamespace(cost_analysis=lambda: {"flops": 10.0, "bytes accessed": 3.0})
    as_list = types.SimpleNamespace(cost_analysis=lambda: [{"flops": 12.0}])
    empty = types.SimpleNamespace(cost_analysis=lambda: None)

    def broken():
        raise NotImplementedError

    assert mfu.step_flops(as_dict) == 10.0
    assert mfu.step_flops(as_list) == 12.0
    assert mfu.step_flops(empty) is None
    assert mfu.step_flops(types.SimpleNamespace(cost_analysis=broken)) is None


def test_loop_correction_adds_the_scan_iterations_xla_counts_once():
    a = jnp.ones((16, 16))

    def f(a):
        return jax.lax.scan(lambda c, _: (c @ a, None), a, None, length=5)[0]

    traced = jax.jit(f).trace(a)
    once = mfu.step_flops(traced.lower().compile())
    assert once == pytest.approx(2 * 16 ** 3, rel=0.05)  # the body once, as the docstring says
    assert mfu.matmul_flops(traced.jaxpr) == 5 * 2 * 16 ** 3
    assert once + mfu.loop_correction(traced.jaxpr) == pytest.approx(5 * 2 * 16 ** 3, rel=0.05)


def test_conv_flops_from_the_jaxpr_match_xla():
    x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 6))

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    traced = jax.jit(conv).trace(x, w)
    assert mfu.matmul_flops(traced.jaxpr) == 2 * (2 * 6 * 6 * 6) * (3 * 3 * 4)
    assert mfu.step_flops(traced.lower()) == pytest.approx(mfu.matmul_flops(traced.jaxpr), rel=0.01)


def test_utilization_math():
    # 2 TFLOP per global step over 4 devices at 10 steps/s: 5 TFLOP/s per device, half of a 10 peak.
    out = mfu.utilization(2e12, 10.0, 4, 10e12)
    assert out == pytest.approx({"tflops_per_device": 5.0, "mfu": 0.5})
    assert "mfu" not in mfu.utilization(2e12, 10.0, 4, None)


@pytest.mark.parametrize("kind, name, bf16", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.4e12), ("NVIDIA H100 PCIe", "H100 PCIe", 756.5e12),
    ("NVIDIA H200", "H200", 989.4e12), ("NVIDIA A100-SXM4-80GB", "A100", 312e12),
    ("TPU v4", "TPU v4", 275e12), ("TPU v5 lite", "TPU v5e", 197e12), ("TPU v5", "TPU v5p", 459e12),
    ("TPU v6 lite", "TPU v6e", 918e12)])
def test_peak_table_lookup(kind, name, bf16):
    got_name, peaks = mfu.peak_entry(kind)
    assert (got_name, peaks["bfloat16"]) == (name, bf16)
    assert peaks["float32"] <= peaks["bfloat16"]
    device = types.SimpleNamespace(platform="gpu", device_kind=kind)
    assert mfu.device_peak(device, "bfloat16") == bf16


def test_unknown_accelerator_has_no_peak_and_cpu_is_measured():
    assert mfu.device_peak(types.SimpleNamespace(platform="gpu", device_kind="Imaginary X1"), "bfloat16") is None
    rate = mfu.cpu_matmul_rate()
    assert 1e8 < rate < 1e14 and mfu.cpu_matmul_rate() == rate  # measured once per process
    cpu = jax.devices("cpu")[0]
    assert mfu.device_peak(cpu, "float32") == rate  # one device: the whole machine
    assert mfu.device_peak(cpu, "bfloat16", num_devices=4) == pytest.approx(rate / 4)  # 4 share it


@pytest.mark.parametrize("parallel, devices", [("shard_map", 1), ("pmap", 2)])
def test_loop_logs_throughput_and_mfu(tmp_path, capsys, parallel, devices):
    from jaxgen import config as config_lib
    from jaxgen.train import log, loop

    config = config_lib.load("vae_digits:quick", ["--config.train.steps=2", "--config.train.log_every=1",
                                                  "--config.train.ckpt_every=0", "--config.train.sample_every=0",
                                                  f"--config.train.parallel={parallel}"])
    loop.train(config, str(tmp_path), devices=jax.devices()[:devices], quiet=True)
    printed = capsys.readouterr().out
    assert "FLOPs per step" in printed and "measured fp32 matmul rate" in printed
    records = log.read_metrics(str(tmp_path))
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        assert r["images_per_s"] == pytest.approx(r["steps_per_s"] * 32)
        assert r["tflops_per_device"] > 0 and 0 < r["mfu"] < 10
    # the FLOPs behind the numbers: tflops_per_device * devices / steps_per_s is one step's FLOPs,
    # the same at both steps, and of the VAE's order (a few hundred MFLOP at batch 32)
    flops = [r["tflops_per_device"] * 1e12 * devices / r["steps_per_s"] for r in records]
    assert flops[0] == pytest.approx(flops[1], rel=1e-6)
    assert 1e7 < flops[0] < 1e10
    assert os.listdir(tmp_path / "tb")  # and TensorBoard got them (the writer logs every key)
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["mfu"] == records[0]["mfu"]
