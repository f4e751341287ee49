"""Smoke run of the scaling benchmark: `python -m benchmarks.scaling --quick` into a temp folder
(one single-process layout and one real 2-process layout)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_scaling_quick_writes_rows_for_each_layout(tmp_path):
    env = dict(os.environ)  # each layout sets its own device count
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "benchmarks.scaling", "--quick", "--timeout", "240",
                           "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    data = json.loads((tmp_path / "scaling.json").read_text())
    rows = {r["layout"]: r for r in data["rows"]}
    assert set(rows) == {"1 x 1", "2 x 1"}
    assert rows["1 x 1"]["devices"] == 1 and rows["2 x 1"]["devices"] == 2 and rows["2 x 1"]["processes"] == 2
    for r in rows.values():
        assert r["config"] == "vae_digits" and r["global_batch"] == 64 and r["steps"] == 3
        assert r["ms_per_step"] > 0 and r["allreduce_ms"] > 0 and r["images_per_s"] > 0
        assert abs(r["compute_ms"] + r["allreduce_ms"] - r["ms_per_step"]) < 1e-6
        assert r["grad_bytes"] == rows["1 x 1"]["grad_bytes"] > 0
    assert rows["1 x 1"]["vs_1_device"] == 1.0
    md = (tmp_path / "scaling.md").read_text()
    assert "| config | processes x devices |" in md and "| vae_digits | 2 x 1 |" in md
