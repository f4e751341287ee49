"""Smoke run of the CLIP throughput benchmark: `python -m benchmarks.clip_step --quick` on 2 devices."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_clip_step_quick_writes_json_and_markdown(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.clip_step", "--quick", "--configs", "clip_digits",
                           "--devices", "2", "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "clip_step.json").read_text())["rows"]
    assert [r["devices"] for r in rows] == [2]  # the subprocess saw the device count asked for
    assert rows[0]["pairs_per_s"] > 0 and rows[0]["batch"] == 32
    assert "| clip_digits:quick | 2 | 32 |" in (tmp_path / "clip_step.md").read_text()
