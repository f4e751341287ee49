"""benchmarks.common imports PyTorch only for a run that times torch rows."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="PyTorch is not installed here (the bench extra brings it), so no import of it to avoid")
def test_torch_is_imported_on_first_use_only():
    code = ("import sys\n"
            "from benchmarks import common\n"
            "env = common.environment()\n"
            "print('torch' in sys.modules, env['torch'] is not None, 'torch_threads' in env)\n"
            "assert common.setup_torch(1)\n"
            "print('torch' in sys.modules, 'torch_threads' in common.environment())\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The environment names torch's version without importing it; setup_torch imports it.
    assert proc.stdout.split() == ["False", "True", "False", "True", "True"]
