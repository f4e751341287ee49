"""The input pipeline: load (build once, survive interrupted and concurrent builds, catalog
datasets), the batch of a step as a pure function, and one-sentence errors."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

import jaxgen
from jaxgen import data
from jaxgen.data import pipeline
from jaxgen.data.digits import Digits, digits_arrays
from jaxgen.data.pipeline import DataError, Dataset
from jaxgen.data.shapes import SPLIT_SEEDS, render_scene

REPO = str(Path(jaxgen.__file__).resolve().parents[1])


pytestmark = pytest.mark.usefixtures("fresh_data_dir")  # tests/data/conftest.py


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory) -> str:
    """One digits build shared by the read-only tests."""
    root = str(tmp_path_factory.mktemp("shared"))
    data.load("digits", "train", root)
    return root


def _toy(n: int = 103) -> Dataset:
    return Dataset(name="toy", split="train", arrays={"index": np.arange(n), "x": np.arange(n) * 2.0},
                   num_examples=n, num_levels=256, num_classes=None)


# ------------------------------------------------------------------------------------ load
@pytest.mark.parametrize("split", ["train", "test"])
def test_load_digits_equals_digits_arrays(digits_dir, split):
    d = data.load("digits", split, digits_dir)
    images, labels = digits_arrays(split)
    assert np.array_equal(d.arrays["image"], images) and np.array_equal(d.arrays["label"], labels)
    assert (d.name, d.split, d.num_examples, d.num_levels, d.num_classes, d.image_key) == (
        "digits", split, len(labels), 17, 10, "image")
    assert d.arrays["image"].dtype == np.uint8 and d.arrays["image"].shape[1:] == (8, 8, 1)


def test_load_is_cached_and_read_only(digits_dir):
    a = data.load("digits", "train", digits_dir)
    assert data.load("digits", "train", digits_dir) is a
    with pytest.raises(ValueError):
        a.arrays["image"][0, 0, 0, 0] = 3


def test_default_data_dir_comes_from_the_environment(tmp_path):
    d = data.load("digits", "test")
    assert d.num_examples == 360
    assert (tmp_path / "datasets" / "digits" / "1.0.0" / "dataset_info.json").exists()


def test_prepared_dataset_is_never_rebuilt(digits_dir, monkeypatch):
    info = Path(digits_dir) / "digits" / "1.0.0" / "dataset_info.json"
    before = info.stat().st_mtime_ns

    def fail(self, split):
        raise AssertionError("rebuilt a prepared dataset")
        yield

    monkeypatch.setattr(Digits, "_generate_examples", fail)
    pipeline.clear_cache()
    assert data.load("digits", "test", digits_dir).num_examples == 360
    assert info.stat().st_mtime_ns == before


def test_shapes_tiny_through_the_pipeline(tmp_path):
    d = data.load("shapes/tiny", "test", str(tmp_path))
    assert d.num_examples == 64 and d.num_levels == 256 and d.num_classes is None
    assert d.arrays["image"].shape == (64, 32, 32, 3) and d.arrays["mask"].shape == (64, 32, 32)
    assert d.arrays["caption"].dtype.kind == "U"  # text features become str arrays
    scene = render_scene(SPLIT_SEEDS["test"], 9)
    for k, v in scene.items():
        assert np.array_equal(d.arrays[k][9], np.asarray(v)), k


def test_build_failing_half_way_leaves_nothing_and_next_load_rebuilds(tmp_path, monkeypatch):
    original = Digits._generate_examples

    def broken(self, split):
        for i, example in enumerate(original(self, split)):
            if i == 100:
                raise RuntimeError("simulated failure")
            yield example

    monkeypatch.setattr(Digits, "_generate_examples", broken)
    with pytest.raises(Exception, match="simulated failure"):
        data.load("digits", "train", str(tmp_path))
    assert not (tmp_path / "digits" / "1.0.0").exists()
    monkeypatch.setattr(Digits, "_generate_examples", original)
    assert np.array_equal(data.load("digits", "train", str(tmp_path)).arrays["label"],
                          digits_arrays("train")[1])


def _python(script: str, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)],
                            env={**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu", **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_build_is_not_mistaken_for_data(tmp_path):
    """kill -9 in the middle of a build, then load: the leftovers are cleared and the data is right."""
    flag = tmp_path / "generating"
    proc = _python(f"""
        import time
        from jaxgen.data import pipeline
        from jaxgen.data.digits import Digits
        original = Digits._generate_examples
        def slow(self, split):
            for i, example in enumerate(original(self, split)):
                if i == 200:
                    open({str(flag)!r}, "w").close()
                    time.sleep(120)
                yield example
        Digits._generate_examples = slow
        pipeline.load("digits", "train", {str(tmp_path)!r})
    """)
    try:
        deadline = time.time() + 60
        while not flag.exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.time() < deadline, "the build never started"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert list((tmp_path / "digits").glob("incomplete.*")), "expected the killed build's folder"
    assert not (tmp_path / "digits" / "1.0.0").exists()

    d = data.load("digits", "train", str(tmp_path))
    assert np.array_equal(d.arrays["image"], digits_arrays("train")[0])
    assert not list((tmp_path / "digits").glob("incomplete.*"))


def test_concurrent_loads_build_once(tmp_path):
    """Two processes (as in a multi-host run on one machine) load the same unbuilt dataset."""
    script = f"""
        from jaxgen.data import pipeline
        d = pipeline.load("shapes/tiny", "train", {str(tmp_path)!r})
        print("examples", d.num_examples, d.arrays["image"].sum())
    """
    procs = [_python(script) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    lines = [[ln for ln in out.splitlines() if ln.startswith("examples")] for out in outs]
    assert lines[0] == lines[1] and lines[0][0].startswith("examples 256 ")
    assert sum(out.count("Downloading and preparing") for out in outs) == 1  # one build


# ------------------------------------------------------------------------------------ catalog
def test_catalog_dataset_through_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=12):
        d = data.load("mnist", "train", str(tmp_path))
    assert d.arrays["image"].shape == (12, 28, 28, 1) and d.arrays["image"].dtype == np.uint8
    assert d.arrays["label"].shape == (12,)
    assert (d.num_levels, d.num_classes, d.num_examples) == (256, 10, 12)
    b = d.batch(0, 0, 4)
    assert b["image"].shape == (4, 28, 28, 1)


def test_unprepared_catalog_dataset_is_a_data_error(tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("with TensorFlow installed TFDS would try to download and prepare mnist")
    with pytest.raises(DataError, match="not prepared") as e:
        data.load("mnist", "train", str(tmp_path))
    assert "jaxgen[catalog]" in str(e.value)


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("name, split, match", [
    ("no_such_dataset", "train", r"unknown dataset 'no_such_dataset'; expected one of .*digits, shapes"),
    ("digits", "validation", r"digits has no split 'validation'; the available splits are train, test"),
    ("shapes/huge", "train", r"shapes has no config 'huge'; the configs are shapes/default, shapes/tiny"),
    ("digits/tiny", "train", r"digits has no config 'tiny'"),
])
def test_bad_names_and_splits_are_data_errors(name, split, match, tmp_path):
    with pytest.raises(DataError, match=match) as e:
        data.load(name, split, str(tmp_path))
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)
    assert not (tmp_path / "digits").exists()  # nothing was built for a bad request


def test_bad_batch_sizes_are_data_errors():
    d = _toy(10)
    with pytest.raises(DataError, match="must be positive, not 0"):
        d.batch(0, 0, 0)
    with pytest.raises(DataError, match="batch size 16 is larger than the 10 examples of toy:train"):
        d.batch(0, 0, 16)
    with pytest.raises(DataError, match="batch size 6 is not divisible by the 4 processes"):
        d.batch(0, 0, 6, 0, 4)
    with pytest.raises(DataError, match="process index 2 is outside 0..1"):
        d.batch(0, 0, 4, 2, 2)
    with pytest.raises(DataError, match="must be non-negative, not 0 and -1"):
        d.batch(0, -1, 4)
    with pytest.raises(DataError, match="global batch size 30 is not divisible by the 8 devices"):
        data.check_divisible(30, 8)
    data.check_divisible(32, 8)


# ------------------------------------------------------------------------------------ batches
def test_batch_is_a_pure_function_of_seed_and_step():
    d = _toy()
    a, b = d.batch(3, 17, 10), d.batch(3, 17, 10)
    assert np.array_equal(a["index"], b["index"]) and np.array_equal(a["x"], 2.0 * a["index"])
    assert not np.array_equal(d.batch(4, 17, 10)["index"], a["index"])
    pipeline._permutation.cache_clear()  # recomputed from scratch: same rows
    assert np.array_equal(d.batch(3, 17, 10)["index"], a["index"])


def test_batch_follows_the_documented_order():
    d, size = _toy(103), 10
    steps_per_epoch = 103 // size
    for step in (0, 9, 10, 23):
        epoch, within = divmod(step, steps_per_epoch)
        perm = np.random.default_rng([5, epoch]).permutation(103)
        assert np.array_equal(d.batch(5, step, size)["index"], perm[within * size:(within + 1) * size])


def test_each_epoch_is_a_permutation():
    d, size = _toy(103), 10
    for epoch in (0, 1):
        rows = np.concatenate([d.batch(0, epoch * 10 + s, size)["index"] for s in range(10)])
        assert len(rows) == len(set(rows.tolist())) == 100  # 3 dropped, none repeated
    first = [d.batch(0, s, size)["index"] for s in (0, 10)]
    assert not np.array_equal(first[0], first[1])  # epochs are shuffled differently


@pytest.mark.parametrize("process_count", [2, 4])
def test_process_slices_make_up_the_global_batch(process_count):
    d = _toy()
    whole = d.batch(1, 7, 16)
    parts = [d.batch(1, 7, 16, p, process_count) for p in range(process_count)]
    assert all(len(p["index"]) == 16 // process_count for p in parts)
    for k in whole:
        assert np.array_equal(np.concatenate([p[k] for p in parts]), whole[k])


def test_batch_keys_selects_features():
    d = _toy()
    assert list(d.batch(0, 0, 4, keys=["x"])) == ["x"]
    with pytest.raises(DataError, match="toy has no feature 'image'"):
        d.batch(0, 0, 4, keys=["image"])
