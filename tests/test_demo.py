"""`jaxgen demo --quick`: every family of the demo trains, evaluates and lands in one report."""
import json
import os

from jaxgen.cli import main
from jaxgen.commands import DEMO_RUNS


def test_quick_demo_runs_every_family_into_one_report(tmp_path):
    assert main(["demo", "--quick", "--workdir", str(tmp_path)]) == 0
    with open(tmp_path / "report.html") as f:
        page = f.read()
    for name in DEMO_RUNS:
        with open(os.path.join(tmp_path, name, "eval.json")) as f:
            results = json.load(f)
        assert results["step"] > 0 and name in page
    # The generative families on digits are judged in the demo classifier's feature space.
    with open(tmp_path / "diffusion_digits_class" / "eval.json") as f:
        assert "frechet_distance" in json.load(f)
