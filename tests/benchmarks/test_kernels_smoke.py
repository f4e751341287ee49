"""Smoke run of the kernel benchmark: `python -m benchmarks.kernels --quick` into a temp folder."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_kernels_quick_writes_json_markdown_and_chart(tmp_path):
    env = dict(os.environ)  # the benchmark runs on one plain CPU device, not the 8 fake ones
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                                if "xla_force_host_platform_device_count" not in f)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "benchmarks.kernels", "--quick", "--out",
                           str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "kernels.json").read_text())
    rows = data["rows"]
    groups = {r["group"] for r in rows}
    assert {"conv 3x3", "conv_transpose s2", "conv_transpose s1", "upsample nearest + conv",
            "upsample bilinear + conv", "unet forward", "unet forward+backward"} <= groups
    assert all(r["median_ms"] > 0 and r["gflops"] > 0 and r["compile_s"] >= 0 for r in rows)
    ceiling = data["ceiling"]  # the best of a measurement at the start and one at the end
    assert ceiling["measurements"] == 2
    per_framework = [v for k, v in ceiling.items() if k in ("jax_gflops", "torch_gflops")]
    assert ceiling["ceiling_gflops"] == max(per_framework) > 0
    for r in rows:  # every row's share of that ceiling
        assert abs(r["pct_ceiling"] - 100 * r["gflops"] / ceiling["ceiling_gflops"]) < 1e-6 * r["pct_ceiling"]
    impls = {r["impl"] for r in rows if r["group"] == "conv_transpose s2"}
    assert {"jaxgen subpixel", "jaxgen vjp", "jaxgen matrix", "lax.conv_transpose",
            "flax ConvTranspose"} <= impls
    if any(r["framework"] == "torch" for r in rows):  # torch installed: twins and ratios exist
        assert all(r["ratio_vs_torch"] > 0 for r in rows if r["framework"] == "jax")
        unet = next(r for r in rows if r["group"] == "unet forward")
        assert unet["extra"]["torch_vs_jax_max_abs_diff"] < 1e-3  # same network, same weights
        torch_pct = [r["pct_ceiling"] for r in rows if r["group"] == "conv_transpose s2" and r["impl"] == "torch"]
        assert data["summary"]["pct_ceiling_needed_for_1.2x_torch_s2"] == (
            f"{1.2 * min(torch_pct):.0f}-{1.2 * max(torch_pct):.0f} %")
    md = (tmp_path / "kernels.md").read_text()
    assert "| group | shape |" in md and "jaxgen subpixel" in md
    assert (tmp_path / "kernels.png").stat().st_size > 1000
