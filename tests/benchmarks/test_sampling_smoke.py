"""Smoke run of the sampling benchmark: `python -m benchmarks.sampling --quick` into a temp folder."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HAS_TORCH = all(importlib.util.find_spec(m) is not None for m in ("torch", "diffusers"))


def test_sampling_quick_writes_json_and_markdown(tmp_path):
    env = dict(os.environ)  # one plain CPU device, not the 8 fake ones of the test session
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                                if "xla_force_host_platform_device_count" not in f)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "benchmarks.sampling", "--quick", "--out", str(tmp_path)]
    proc = subprocess.run(cmd + ([] if HAS_TORCH else ["--no-torch"]), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "sampling.json").read_text())
    assert data["environment"]["xla_flags"]  # the recommended CPU flags were set before JAX started
    rows = data["rows"]
    assert {r["sampler"] for r in rows} == {"DDPM-1000", "DDIM-50", "DDIM-10"}
    assert {r["guidance"] is None for r in rows} == {True, False}  # with and without guidance
    for r in rows:
        assert r["fused_images_per_s"] > 0 and r["fused_compile_s"] > 0
        # GFLOP/s sustained = forwards per step x GFLOP per forward / s per step, and its share of
        # the ceiling measured in the same run.
        forwards = r["batch"] * (2 if r["guidance"] else 1)
        gflops = forwards * data["models"]["tiny"]["jax_gflops_per_forward"] / r["fused_s_per_step"]
        assert abs(r["fused_gflops"] - gflops) < 1e-9 * gflops
        assert abs(r["fused_pct_ceiling"] - 100 * gflops / data["ceiling"]["ceiling_gflops"]) < 1e-6
        assert 1 <= r["measured_steps"] <= r["steps"]
        assert r["extrapolated"] == (r["measured_steps"] < r["steps"])
        if r["method"] == "ddim":  # the Python loop of jitted steps, beside the fused chain
            assert r["loop_images_per_s"] > 0 and r["fused_vs_loop"] > 0
    model = data["models"]["tiny"]
    assert model["jax_params"] > 0 and model["jax_gflops_per_forward"] > 0
    mem = data["memory"]
    assert mem["analysis"]["tiny"]["ratio_total"] > 0
    assert all(r["peak_rss_run"] > 0 for r in mem["rss"]["runs"]) and mem["rss"]["ratio"] > 0
    if HAS_TORCH:  # diffusers side by side, with parameter counts within 5%
        assert abs(model["param_ratio"] - 1.0) <= 0.05
        assert all(r["torch_images_per_s"] > 0 and r["fused_vs_torch"] > 0 for r in rows)
    md = (tmp_path / "sampling.md").read_text()
    assert "| model | batch | guidance | sampler |" in md and "DDIM-50" in md
    assert "memory_analysis" in md and "extrapolated" in md and "% ceiling" in md
