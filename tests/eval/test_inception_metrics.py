"""KID, and `jaxgen eval`'s FID / KID / precision / recall in the standard Inception features: the
numbers are those of FIDScorer on the same samples and held-out images; no weights, no numbers (one
line saying why), and eval.fid_samples = 0 turns them off."""
import json
import os

import jax
import numpy as np
import pytest
from flax import serialization

from jaxgen import commands
from jaxgen import config as config_lib
from jaxgen.config import ConfigError
from jaxgen.data import transforms
from jaxgen.eval import inception
from jaxgen.eval.fid import FIDScorer, compare_features, kid
from jaxgen.tasks import runs
from jaxgen.train import loop


def _brute_force_kid(x, y):
    d, m = x.shape[1], len(x)
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean())


def test_kid_is_the_unbiased_mmd_of_the_cubic_kernel():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 16)), rng.normal(0.5, 1.0, size=(40, 16))
    # Subsets of every row: each subset is the whole set, so the average is the full-set estimate.
    assert kid(x, y, num_subsets=3, subset_size=40) == pytest.approx(_brute_force_kid(x, y), rel=1e-12)
    same = kid(x, rng.normal(size=(40, 16)), num_subsets=20, subset_size=30)
    assert abs(same) < 0.2 * kid(x, y, num_subsets=20, subset_size=30)  # unbiased: about 0 for one law
    with pytest.raises(ValueError, match="KID needs features"):
        kid(x, y[:, :8])


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("inception") / "vae")
    loop.train(config_lib.load("vae_digits:quick"), workdir, jax.devices()[:1], quiet=True)
    return workdir


def test_eval_reports_the_inception_metrics_of_its_samples(vae_run, tmp_path, monkeypatch, capsys):
    params = inception.init_params(0)  # random weights: the plumbing, not the network, is under test
    cache = tmp_path / "cache" / "fid_inception"
    cache.mkdir(parents=True)
    (cache / "params.msgpack").write_bytes(serialization.msgpack_serialize(jax.device_get(params)))
    monkeypatch.setenv("JAXGEN_CACHE", str(tmp_path / "cache"))
    assert commands.evaluate(vae_run, ["--config.eval.fid_samples=12"]) == 0
    results = json.loads(open(os.path.join(vae_run, "eval.json")).read())

    config, task, state = runs.restore_for_eval(vae_run, overrides=["--config.eval.fid_samples=12"])
    samples = np.asarray(task.sample(task.eval_params(state), jax.random.PRNGKey(config.seed + 7), 12)["images"])
    test = task.eval_dataset()
    real = np.asarray(transforms.to_unit(test.arrays["image"][:12], test.num_levels))
    expected = FIDScorer(params).compare(samples, real)
    for name, value in expected.items():
        assert results[f"inception_{name}"] == pytest.approx(value, rel=1e-5, abs=1e-9), name
    assert results["inception_num"] == 12 and results["inception_fid"] > 0

    # Off: eval.fid_samples = 0; and without weights, one line saying where they should be.
    task.config.eval.fid_samples = 0
    assert commands._inception_metrics(task, state) == {}
    task.config.eval.fid_samples = 12
    monkeypatch.setenv("JAXGEN_CACHE", str(tmp_path / "empty"))
    capsys.readouterr()
    assert commands._inception_metrics(task, state) == {}
    assert "no FID / KID: the FID Inception weights are not at" in capsys.readouterr().out


def test_a_bad_sample_count_is_one_sentence():
    with pytest.raises(ConfigError, match=r"eval.fid_samples must be 0 \(no FID\) or an integer of at least 2"):
        config_lib.load("vae_digits:quick", ["--config.eval.fid_samples=1"])


def test_the_fid_reference_is_prepared_as_the_training_images():
    """A GAN that trains on centre crops (data.center_crop, CelebA's faces) is compared with centre
    crops of the held-out images, not with whole images squashed to the samples' size."""
    plain = runs.make_task(config_lib.load("gan_digits:quick"))
    config = config_lib.load("gan_digits:quick")
    with config.unlocked():
        config.data.center_crop = 6  # dcgan_celeba's field, on the digits' test split
    cropped = runs.make_task(config)
    test = plain.fid_reference_dataset()
    unit = transforms.to_unit(test.arrays["image"][:300], test.num_levels)
    np.testing.assert_array_equal(plain.fid_reference_images(300, 8), np.asarray(transforms.resize(unit, 8)))
    want = np.asarray(transforms.center_crop_resize(unit, 6, 8))  # 300 rows: two chunks, one partial
    np.testing.assert_allclose(cropped.fid_reference_images(300, 8), want, rtol=1e-6, atol=1e-6)
    # The preparation the GAN trains on: its preprocess, mapped back to [0, 1].
    trained_on = (np.asarray(cropped.preprocess(test.arrays["image"][:300])) + 1.0) / 2.0
    np.testing.assert_allclose(cropped.fid_reference_images(300, 8), trained_on, rtol=1e-5, atol=1e-5)
    assert np.abs(want - np.asarray(transforms.resize(unit, 8))).max() > 0.1
    # Another split (a real-vs-real floor, experiments/shapes_fid.py): its images, prepared the same way.
    train = cropped.dataset
    unit_train = transforms.to_unit(train.arrays["image"][:300], train.num_levels)
    np.testing.assert_array_equal(plain.fid_reference_images(300, 8, train), np.asarray(transforms.resize(unit_train, 8)))
    np.testing.assert_allclose(cropped.fid_reference_images(300, 8, train),
                               np.asarray(transforms.center_crop_resize(unit_train, 6, 8)), rtol=1e-6, atol=1e-6)
    assert not np.array_equal(plain.fid_reference_images(300, 8, train), plain.fid_reference_images(300, 8))


def test_compare_features_of_a_set_against_itself_and_a_shifted_copy():
    features = np.random.default_rng(0).normal(size=(200, 16))
    same = compare_features(features, features)
    assert abs(same["fid"]) < 1e-6 and same["precision"] == 1.0 and same["recall"] == 1.0
    # Equal covariances: the Frechet distance is the squared distance between the means.
    shift = np.linspace(0.0, 1.0, 16)
    np.testing.assert_allclose(compare_features(features + shift, features)["fid"], np.sum(shift ** 2), rtol=1e-6)
