"""Run outputs (jaxgen.train.log): the TensorBoard writer comes without PyTorch."""
import importlib.util
import os

import pytest


@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="PyTorch is not installed here (the bench extra brings it), so no import of it to avoid")
def test_metrics_writer_logs_to_tensorboard_without_importing_torch(tmp_path, fresh_python):
    # A fresh process: this test session may have imported torch already. tensorboardX tries
    # `import torch` when it loads; jaxgen's writer must not let it, and torch must still import after.
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from jaxgen.train import log\n"
        f"w = log.MetricsWriter({str(tmp_path)!r})\n"
        "w.write(3, {'loss': 0.5})\n"
        "w.image('samples', np.zeros((4, 4, 3), np.uint8), 3)\n"
        "w.close()\n"
        "print('torch' in sys.modules)\n"
        "import torch\n"
        "print(torch.ones(2).sum().item())\n")
    assert fresh_python(code) == ["False", "2.0"]
    assert os.listdir(tmp_path / "tb")[0].startswith("events.out.tfevents.")
    with open(tmp_path / "metrics.jsonl") as f:
        assert '"loss": 0.5' in f.read()
