"""The `jaxgen` command: the happy path on a tiny run, and one clear sentence for each bad input."""
import inspect
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxgen.cli import main


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("vae"))
    assert main(["train", "vae_digits:quick", "--workdir", workdir, "--quiet"]) == 0
    return workdir


def test_train_writes_samples_and_checkpoints(vae_run):
    assert sorted(os.listdir(os.path.join(vae_run, "samples"))) == ["step_0000010.png", "step_0000020.png"]
    assert sorted(os.listdir(os.path.join(vae_run, "checkpoints"))) == ["10", "20"]


def test_sample_png_and_npz(vae_run, tmp_path):
    assert main(["sample", "--workdir", vae_run, "--num", "6", "--seed", "3", "--out", str(tmp_path / "g.png")]) == 0
    assert Image.open(tmp_path / "g.png").size[0] > 32
    assert main(["sample", "--workdir", vae_run, "--num", "6", "--seed", "3", "--out", str(tmp_path / "a.npz")]) == 0
    assert main(["sample", "--workdir", vae_run, "--num", "6", "--seed", "3", "--out", str(tmp_path / "b.npz")]) == 0
    a, b = np.load(tmp_path / "a.npz")["images"], np.load(tmp_path / "b.npz")["images"]
    assert a.shape == (6, 8, 8, 1) and 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)  # seeded


def test_eval_and_report(vae_run, capsys):
    assert main(["eval", "--workdir", vae_run]) == 0
    results = json.load(open(os.path.join(vae_run, "eval.json")))
    assert results["step"] == 20 and np.isfinite(results["test_iwae8_nats"])
    assert sorted(os.listdir(os.path.join(vae_run, "figures"))) == ["interpolations.png", "reconstructions.png"]
    assert main(["report", "--workdir", vae_run]) == 0
    page = open(os.path.join(vae_run, "report.html")).read()
    assert "test_iwae8_nats" in page and page.count("data:image/png;base64") >= 5


def _error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("jaxgen: error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("override, message", [
    ("--config.data.name=no_such_data", "no_such_data"),
    ("--config.data.split=validation", "validation"),
    ("--config.train.batch_size=30", "not divisible by the 8 devices"),
    ("--config.model.likelihood=gaussian", "model.likelihood must be one of"),
    ("--config.train.lr=3", "no field 'train.lr'"),
])
def test_bad_config_is_one_sentence_and_writes_nothing(capsys, tmp_path, override, message):
    workdir = tmp_path / "run"
    err = _error(capsys, ["train", "vae_digits:quick", "--workdir", str(workdir), override])
    assert message in err
    assert not workdir.exists()


def test_missing_run_and_bad_output(capsys, tmp_path, vae_run):
    assert "holds no jaxgen run" in _error(capsys, ["eval", "--workdir", str(tmp_path / "nothing")])
    assert "--out must end in .png" in _error(capsys, ["sample", "--workdir", vae_run, "--out", str(tmp_path / "x.jpg")])
    assert not (tmp_path / "x.jpg").exists()


def test_corrupt_checkpoint_is_a_clear_error(capsys, tmp_path, vae_run):
    broken = tmp_path / "broken"
    shutil.copytree(vae_run, broken)
    for root, _, files in os.walk(broken / "checkpoints" / "20" / "state"):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")
    err = _error(capsys, ["sample", "--workdir", str(broken), "--out", str(tmp_path / "s.png")])
    assert "checkpoint 20" in err and "cannot be" in err
    assert not (tmp_path / "s.png").exists()


def _run_without_jax(code: str) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter (this one has JAX loaded by conftest) and returns it;
    the code ends by asserting that JAX was never imported."""
    check = "\nimport sys\nassert 'jax' not in sys.modules, sorted(m for m in sys.modules if m.startswith('jax.'))[:5]\n"
    return subprocess.run([sys.executable, "-c", code + check], capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_configs_lists_every_config_without_importing_jax():
    from jaxgen import config as config_lib

    done = _run_without_jax("from jaxgen.cli import main\nassert main(['configs']) == 0")
    assert done.returncode == 0, done.stderr
    rows = done.stdout.splitlines()
    assert [r.split()[0] for r in rows] == config_lib.available() and "vae_digits" in done.stdout
    # Each name with the first sentence of its config's docstring, on one line.
    vae = next(r for r in rows if r.startswith("vae_digits "))
    assert vae.split(None, 1)[1] == ("VAE on the embedded digits at their native 8x8, 17-level resolution "
                                     "(categorical likelihood)")
    assert all(0 < len(r.split(None, 1)[1]) <= 100 for r in rows)


def test_configs_describes_one_config_without_importing_jax():
    from jaxgen.configs import ddpm_cifar10

    done = _run_without_jax("from jaxgen.cli import main\nassert main(['configs', 'ddpm_cifar10']) == 0")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("ddpm_cifar10\n\n" + inspect.cleandoc(ddpm_cifar10.__doc__) + "\n\n"
                           "Variants (`jaxgen train ddpm_cifar10:VARIANT`): '', 'demo', 'mock' or 'quick'.\n")
    assert "35,746,307" in done.stdout  # the paper's settings travel with the description


def test_config_summary_ends_at_the_first_sentence():
    from jaxgen import config as config_lib

    # "sec. 4" and "arXiv:2006" are not sentence ends; a narrow width cuts at a word and says so.
    assert config_lib.summary("ddpm_cifar10", width=200) == (
        'DDPM on CIFAR-10 at the scale of Ho, Jain & Abbeel (2020), "Denoising Diffusion Probabilistic '
        'Models" (arXiv:2006.11239), sec. 4 and appendix B')
    assert config_lib.summary("ddpm_cifar10", width=40) == "DDPM on CIFAR-10 at the scale of Ho..."
    assert config_lib.summary("classifier_digits") == "Digits classifier"


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["demo", "--help"], ["generate", "--help"]])
def test_help_answers_without_importing_jax(argv):
    done = _run_without_jax("from jaxgen.cli import main\n"
                            "try:\n"
                            f"    main({argv!r})\n"
                            "except SystemExit as e:\n"
                            "    assert e.code == 0, e.code\n"
                            "else:\n"
                            "    raise AssertionError('--help did not exit')")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: jaxgen") and "--help" in done.stdout
