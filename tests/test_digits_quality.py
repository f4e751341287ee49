"""experiments.digits_quality on quick runs: the files, the headline (the distance to the test split,
not to train), the real references, and the README's diffusion settings beside the config's sampler."""
import json
import os

import numpy as np
import pytest

from experiments import diffusion_sweeps, digits_quality
from jaxgen.cli import main as cli
from jaxgen.data import load


@pytest.fixture(scope="module")
def quick_runs(shared_dir):
    """A 6-iteration gan_digits run and a 4-step class-conditional diffusion run at 8x8, via the CLI."""
    def build(path):
        assert cli(["train", "gan_digits:quick", "--workdir", str(path / "gan"), "--quiet"]) == 0
        assert cli(["train", "diffusion_digits_class:quick", "--workdir", str(path / "diff"), "--quiet",
                    "--config.train.steps=4", "--config.train.ckpt_every=4", "--config.data.image_size=8"]) == 0
    root = shared_dir("digits_quality_runs", build)
    return os.path.join(root, "gan"), os.path.join(root, "diff")


def test_writes_the_test_split_distance_as_the_headline(quick_runs, classifier_run, tmp_path):
    gan, diff = quick_runs
    out = tmp_path / "dq"
    assert digits_quality.main(["--classifier", classifier_run, "--gan", gan, "--diffusion_class", diff,
                                "--num", "120", "--out", str(out)]) == 0
    result = json.loads((out / "digits_quality.json").read_text())
    md = (out / "digits_quality.md").read_text()
    assert result["meta"]["headline"] == "frechet_distance_to_test"
    # GAN: one row; diffusion: the config's DDIM-10 (quick) and the README's DDPM-100 at w = 1, static
    assert [(r["run"], r["sampler"]) for r in result["rows"]] == [
        ("gan", "generator"), ("diffusion_class", "DDIM-10, dynamic, w = 2"),
        ("diffusion_class", "DDPM-100, static, w = 1")]
    ref = result["reference"]
    for r in result["rows"]:
        # the headline differs from the train-split distance it replaces, and is scaled by the reference
        assert r["frechet_distance_to_test"] != pytest.approx(r["frechet_distance"], rel=1e-6)
        assert r["fd_to_test_over_reference"] == pytest.approx(r["frechet_distance_to_test"]
                                                              / ref["frechet_train_to_test"])
        assert 0.0 <= r["saturated_fraction"] <= 1.0 and 0.0 <= r["precision"] <= 1.0
        assert r["frechet_distance_360"] is None  # 120 samples: no whole chunk of 360 (null, not NaN)
    assert result["rows"][2]["overrides"] == {"method": "ddpm", "steps": 100, "thresholding": "static", "guidance": 1.0}
    # the table's first numeric column is the headline, and the real reference row closes it
    header = next(line for line in md.splitlines() if line.startswith("| run"))
    assert header.split(" | ")[2] == "FD to test (headline)"
    gan_row = next(line for line in md.splitlines() if line.startswith("| gan"))
    assert gan_row.split(" | ")[2] == f"{result['rows'][0]['frechet_distance_to_test']:.1f}"
    assert md.splitlines()[-1].startswith("| real train split vs test")
    # the reference saturation is counted on the integer levels of the real test digits
    images = load("digits", "test").arrays["image"]
    assert ref["saturated_fraction_real_test"] == pytest.approx(np.mean((images == 0) | (images == 16)))
    assert 0.5 < ref["saturated_fraction_real_test"] < 0.65


def test_wrong_kind_of_run_is_one_sentence(quick_runs, classifier_run, tmp_path):
    gan, _ = quick_runs
    with pytest.raises(SystemExit, match=r"^--cgan .* is a gan run; --cgan expects a conditional gan run\.$"):
        digits_quality.main(["--classifier", classifier_run, "--cgan", gan, "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def test_solver_sweep_counts_network_evaluations_and_leads_with_the_test_distance(quick_runs, classifier_run,
                                                                                  tmp_path):
    """experiments.diffusion_sweeps --solvers: DDIM, DPM-Solver++(2M) on both grids and EDM Heun at
    about 5 and 10 evaluations (on the Karras grid at most N, Heun's at most 2 N - 1: fewer where
    Karras sigmas snap together on the quick run's 100 timesteps), one row each, the test-split
    distance first."""
    _, diff = quick_runs
    diffusion_sweeps.main(["--workdir", diff, "--classifier", classifier_run, "--skip_guidance", "--skip_steps",
                           "--solvers", "--solvers_num", "40", "--solvers_nfe", "5", "10", "--solvers_seeds", "2",
                           "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "diffusion_solvers.json").read_text())["rows"]
    assert [r["method"] for r in rows] == list(diffusion_sweeps.SOLVERS) * 2
    assert [r["nfe"] for r in rows if r["method"] in ("ddim", "dpmpp_2m")] == [5, 5, 10, 10]
    karras = [r["nfe"] for r in rows if r["method"] == "dpmpp_2m_karras"]
    assert all(1 < n <= cap for n, cap in zip(karras, (5, 10))) and karras == sorted(karras)
    heun = [r["nfe"] for r in rows if r["method"] == "edm_heun"]
    assert all(n % 2 == 1 and n <= cap for n, cap in zip(heun, (5, 9))) and heun == sorted(heun)
    header = next(line for line in (tmp_path / "diffusion_solvers.md").read_text().splitlines()
                  if line.startswith("| method"))
    assert header.split(" | ")[3] == "frechet_distance_to_test"
    assert header.rstrip(" |").endswith("frechet_distance_to_test_mean | frechet_distance_to_test_sd | seeds")
    for r in rows:  # two keys: the mean sits half their gap from the first, the sd is the gap / sqrt(2)
        assert r["seeds"] == 2 and r["frechet_distance_to_test_sd"] > 0
        gap = abs(r["frechet_distance_to_test_mean"] - r["frechet_distance_to_test"])
        np.testing.assert_allclose(gap, r["frechet_distance_to_test_sd"] / np.sqrt(2), rtol=1e-6)
        assert r["frechet_distance_to_test_per_seed"][0] == r["frechet_distance_to_test"]
    diffusion_sweeps.main(["--workdir", diff, "--classifier", classifier_run, "--skip_guidance", "--skip_steps",
                           "--solvers", "--solvers_num", "40", "--solvers_nfe", "5", "--solvers_methods", "ddim",
                           "--out", str(tmp_path / "ddim")])
    only = json.loads((tmp_path / "ddim" / "diffusion_solvers.json").read_text())["rows"]
    assert [(r["method"], r["nfe"]) for r in only] == [("ddim", 5)]
    assert only[0]["frechet_distance_to_test"] == rows[0]["frechet_distance_to_test"]  # the same first key
    with pytest.raises(SystemExit, match=r"^--solvers_methods: 'rk4' is not one of ddim, .*heun\.$"):
        diffusion_sweeps.main(["--workdir", diff, "--classifier", classifier_run, "--solvers", "--solvers_methods",
                               "ddim", "rk4", "--out", str(tmp_path / "none")])
    with pytest.raises(SystemExit, match=r"^--solvers_methods euler selects no solver of these runs; they sample "
                                         r"with ddim, dpmpp_2m, dpmpp_2m_karras, edm_heun\.$"):
        diffusion_sweeps.main(["--workdir", diff, "--classifier", classifier_run, "--skip_guidance", "--skip_steps",
                               "--solvers", "--solvers_methods", "euler", "--out", str(tmp_path / "none")])
    with pytest.raises(SystemExit, match=r"^--solvers_seeds must be at least 1, not 0\.$"):
        diffusion_sweeps.main(["--workdir", diff, "--classifier", classifier_run, "--solvers", "--solvers_seeds", "0",
                               "--out", str(tmp_path / "none")])
    assert not (tmp_path / "none").exists()
