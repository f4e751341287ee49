"""benchmarks.common imports PyTorch only for a run that times torch rows."""
import importlib.util

import pytest


@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="PyTorch is not installed here (the bench extra brings it), so no import of it to avoid")
def test_torch_is_imported_on_first_use_only(fresh_python):
    code = ("import sys\n"
            "from benchmarks import common\n"
            "env = common.environment()\n"
            "print('torch' in sys.modules, env['torch'] is not None, 'torch_threads' in env)\n"
            "assert common.setup_torch(1)\n"
            "print('torch' in sys.modules, 'torch_threads' in common.environment())\n")
    # The environment names torch's version without importing it; setup_torch imports it.
    assert fresh_python(code) == ["False", "True", "False", "True", "True"]
