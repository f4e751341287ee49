"""Streaming input: a split read by random access (never whole), the same batches as the in-memory
split, bounded host memory on a 100,000-image split, exact resume through the loop's prefetcher,
and the deterministic per-example random crop."""
import os
import threading
import time
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from array_record.python.array_record_module import ArrayRecordWriter
from tensorflow_datasets.proto import tf_example_pb2

from jaxgen import config as config_lib
from jaxgen import data
from jaxgen.data import pipeline, streaming, transforms
from jaxgen.data.digits import digits_arrays
from jaxgen.data.pipeline import DataError
from jaxgen.tasks.base import TaskError
from jaxgen.train import loop

BIG = 100_000  # examples of the generated split: 64x64x3 uint8, 1.23 GB decoded
SIZE = 64
DISTINCT = 251  # distinct pictures: record i shows picture i % DISTINCT (cheap to write, checkable)


pytestmark = pytest.mark.usefixtures("fresh_data_dir")  # tests/data/conftest.py


@pytest.fixture(scope="module")
def embedded_dir(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("embedded"))
    data.load("digits", "train", root)
    data.load("shapes/tiny", "train", root)
    return root


def _reference_rows(n: int, seed: int, step: int, b: int, p: int = 0, count: int = 1) -> np.ndarray:
    """The rows of process p's part of the batch of `step`, as the pipeline has always drawn them:
    epoch order default_rng([seed, epoch]).permutation(n), the last partial batch dropped."""
    epoch, within = divmod(step, n // b)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    rows = order[within * b:(within + 1) * b]
    return rows[p * (b // count):(p + 1) * (b // count)]


# ------------------------------------------------------------------------------------ embedded
CASES = [(0, 0, 1), (0, 11, 1), (3, 17, 2), (5, 1000, 4)]  # (seed, step, processes); 1000 is epochs in


@pytest.mark.parametrize("name, b", [("digits", 64), ("shapes/tiny", 32)])
def test_embedded_batches_are_todays_in_memory_and_streamed(embedded_dir, name, b):
    memory = data.load(name, "train", embedded_dir)
    streamed = data.load(name, "train", embedded_dir, in_memory=False)
    assert not memory.streamed and streamed.streamed and isinstance(streamed.arrays, streaming.StreamedArrays)
    assert streamed.num_examples == memory.num_examples and list(streamed.arrays) == list(memory.arrays)
    truth = dict(zip(("image", "label"), digits_arrays("train"))) if name == "digits" else memory.arrays
    for seed, step, count in CASES:
        for p in range(count):
            rows = _reference_rows(memory.num_examples, seed, step, b, p, count)
            for keys in (None, ("image",)):
                want = {k: truth[k][rows] for k in (keys or memory.arrays)}
                for d in (memory, streamed):
                    got = d.batch(seed, step, b, p, count, keys=keys)
                    assert list(got) == list(want)
                    for k in want:
                        assert got[k].dtype.kind == want[k].dtype.kind and np.array_equal(got[k], want[k]), (k, d)


def test_a_streamed_column_reads_rows_and_whole_features_when_asked(embedded_dir):
    memory = data.load("shapes/tiny", "train", embedded_dir)
    streamed = data.load("shapes/tiny", "train", embedded_dir, in_memory=False)
    col, ref = streamed.arrays["image"], memory.arrays["image"]
    assert (col.shape, col.dtype, col.ndim, len(col)) == (ref.shape, ref.dtype, 4, 256)
    assert streamed.arrays._cache == {}  # shape and dtype without reading the split
    for index in (5, -1, slice(3, 9), slice(None, 8), [7, 2, 7], np.arange(256) % 3 == 0, (4, 0), (slice(0, 2), 1)):
        assert np.array_equal(col[index], ref[index]), index
    assert streamed.arrays._cache == {}  # indexing read only those rows
    # what needs the whole feature reads it once (small: kept) and sees an ndarray
    assert np.array_equal(np.asarray(col), ref) and "image" in streamed.arrays._cache
    assert col.astype(np.float32).mean() == ref.astype(np.float32).mean()
    assert np.array_equal(col == 0, ref == 0) and np.array_equal(jnp.asarray(col[:2]), ref[:2])
    assert [str(c) for c in streamed.arrays["caption"]] == memory.arrays["caption"].tolist()
    assert streamed.arrays["caption"].dtype.kind == "U" and streamed.arrays["mask"].shape == (256, 32, 32)
    with pytest.raises(DataError, match="has no feature 'depth'"):
        streamed.batch(0, 0, 8, keys=("depth",))


def test_select_classes_keeps_a_streamed_split_on_disk(embedded_dir):
    memory = pipeline.select_classes(data.load("digits", "train", embedded_dir), (2, 7))
    streamed = pipeline.select_classes(data.load("digits", "train", embedded_dir, in_memory=False), (2, 7))
    assert isinstance(streamed.arrays, streaming.StreamedArrays) and "image" not in streamed.arrays._cache
    assert streamed.num_examples == memory.num_examples and streamed.classes == (2, 7)
    for step in (0, 5, 40):
        a, b = memory.batch(1, step, 32), streamed.batch(1, step, 32)
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_bad_paths_and_modes_are_data_errors(tmp_path):
    with pytest.raises(DataError, match=r"holds no prepared TFDS dataset \(no dataset_info.json\)"):
        data.load(str(tmp_path), "train")
    with pytest.raises(DataError, match="in_memory must be True, False or None"):
        data.load("digits", "train", in_memory="yes")


# ------------------------------------------------------------------------------------ 100k split
def _picture(i: int) -> np.ndarray:
    """The uint8 [64, 64, 3] picture of record i."""
    k = i % DISTINCT
    image = np.empty((SIZE, SIZE, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = k, (7 * k) % 256, np.arange(SIZE, dtype=np.uint8)[:, None] + k
    return image


def _write_split(root: str, n: int, shards: int = 4) -> None:
    """A TFDS dataset "big" in `root` (what a TFDS builder with file_format="array_record" writes):
    split "train" of n records {"image": uint8 [64, 64, 3] (zlib bytes), "label": int64 i}.

    Records are tf.train.Example protos built directly (3.6 us each here, TFDS's serializer 29 us)
    from DISTINCT pictures compressed once, so 100,000 of them take about a second."""
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(SIZE, SIZE, 3), dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB),
        "label": tfds.features.Scalar(dtype=np.int64)})
    pictures = [zlib.compress(_picture(k).tobytes()) for k in range(DISTINCT)]
    template = tfds.core.ShardedFileTemplate(data_dir=root, dataset_name="big", split="train",
                                             filetype_suffix="array_record")
    bounds = np.linspace(0, n, shards + 1).astype(int)
    for s in range(shards):
        # group_size:1: every record its own chunk, read by one seek (what TFDS writes for random access)
        writer = ArrayRecordWriter(os.fspath(template.sharded_filepath(shard_index=s, num_shards=shards)),
                                   "group_size:1")
        for i in range(bounds[s], bounds[s + 1]):
            example = tf_example_pb2.Example()
            example.features.feature["image"].bytes_list.value.append(pictures[i % DISTINCT])
            example.features.feature["label"].int64_list.value.append(i)
            writer.write(example.SerializeToString())
        writer.close()
    identity = tfds.core.dataset_info.DatasetIdentity(name="big", version="1.0.0", data_dir=root, module_name="")
    info = tfds.core.DatasetInfo(builder=identity, features=features, disable_shuffling=True)
    info.set_file_format("array_record")
    info.set_splits(tfds.core.SplitDict([tfds.core.SplitInfo(
        name="train", shard_lengths=np.diff(bounds).tolist(), num_bytes=0, filename_template=template)]))
    info.write_to_directory(root)


@pytest.fixture(scope="module")
def big_dir(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("big") / "big" / "1.0.0")
    os.makedirs(root)
    _write_split(root, BIG)
    return root


def _rss() -> int:
    """This process's resident memory now, in bytes."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def _check(batch: dict, rows: np.ndarray) -> None:
    """The batch holds records `rows`, each its own picture."""
    assert np.array_equal(batch["label"], rows)
    for j in (0, len(rows) // 2, len(rows) - 1):
        assert np.array_equal(batch["image"][j], _picture(int(rows[j])))


def test_a_100k_split_trains_in_bounded_memory(big_dir):
    """A task built on the 100,000-image split (1.23 GB decoded) and 100 of its batches through the
    loop's prefetcher (25,600 images, 315 MB, read by random access all over the split): resident
    memory grows by less than 64 MiB, a bound that does not depend on the split's size."""
    config = config_lib.load("vae_digits:quick", [f"--config.data.name={big_dir}", "--config.data.eval_split=",
                                                  "--config.train.batch_size=256"])
    start = _rss()
    task, _ = loop.setup(config, jax.devices()[:1])  # the task reads the image shape, nothing more
    d = task.dataset
    assert d.streamed and d.num_examples == BIG and d.arrays["image"].shape == (BIG, SIZE, SIZE, 3)
    split_bytes = BIG * SIZE * SIZE * 3
    peak, steps = 0, 100
    with loop.Prefetcher(lambda s: d.batch(config.seed, s, 256, keys=("image", "label")), 0, steps) as batches:
        for step in range(steps):
            batch = batches.get(step)
            assert batch["image"].shape == (256, SIZE, SIZE, 3) and batch["image"].dtype == np.uint8
            if step % 10 == 0:
                _check(batch, _reference_rows(BIG, config.seed, step, 256))
            peak = max(peak, _rss() - start)
    assert d.arrays._cache == {}  # no feature was ever read whole
    assert peak < 64 * 2**20 < split_bytes / 16, f"resident memory grew by {peak / 2**20:.1f} MiB"


def test_resumed_batches_equal_the_uninterrupted_ones(big_dir):
    """A run that has been going since before the epoch boundary (step 390 of 256-image batches) and
    one resumed at step 388 in a fresh pipeline get the same batches; so do two processes' halves."""
    b, seed = 256, 7
    whole = data.load(big_dir, "train")
    make = lambda d: (lambda s: d.batch(seed, s, b))  # noqa: E731
    with loop.Prefetcher(make(whole), 384, 394) as running:
        uninterrupted = {s: running.get(s) for s in range(384, 394)}
    pipeline.clear_cache()
    fresh = data.load(big_dir, "train")
    assert fresh is not whole
    with loop.Prefetcher(make(fresh), 388, 394) as resumed:
        for s in range(388, 394):
            got = resumed.get(s)
            assert all(np.array_equal(got[k], uninterrupted[s][k]) for k in got)
            halves = [fresh.batch(seed, s, b, p, 2) for p in range(2)]
            assert all(np.array_equal(np.concatenate([h[k] for h in halves]), got[k]) for k in got)
    for s in (384, 389, 390, 393):  # both sides of the boundary (390 batches per epoch)
        _check(uninterrupted[s], _reference_rows(BIG, seed, s, b))


# ------------------------------------------------------------------------------------ prefetch
class Boom(Exception):
    pass


def test_prefetcher_serves_steps_in_order_at_most_depth_ahead():
    made = []
    with loop.Prefetcher(lambda s: made.append(s) or {"x": np.full(3, s)}, 5, 12, depth=2) as p:
        assert p.get(5)["x"].tolist() == [5, 5, 5]
        deadline = time.time() + 10
        while len(made) < 4 and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # time enough to make more, had it not to wait for room
        assert made == [5, 6, 7, 8]  # 6 and 7 queued, 8 made and waiting for room
        assert [int(p.get(s)["x"][0]) for s in range(6, 12)] == list(range(6, 12))
        with pytest.raises(ValueError, match="serves step 12 next"):
            p.get(13)


def test_a_worker_exception_surfaces_as_itself_at_its_step():
    error = Boom("no such record")

    def make(s):
        if s == 3:
            raise error
        return s

    with loop.Prefetcher(make, 0, 10) as p:
        assert [p.get(s) for s in range(3)] == [0, 1, 2]
        with pytest.raises(Boom) as e:
            p.get(3)
    assert e.value is error and any(f.co_name == "make" for f in _frames(e.value.__traceback__))


def _frames(tb):
    while tb is not None:
        yield tb.tb_frame.f_code
        tb = tb.tb_next


def test_an_interrupt_stops_the_worker_promptly():
    started = threading.Event()

    def make(s):
        started.set()
        time.sleep(0.02)
        return s

    with pytest.raises(KeyboardInterrupt):
        with loop.Prefetcher(make, 0, 10**6, depth=2) as p:
            started.wait(5)
            p.get(0)
            raise KeyboardInterrupt
    p._thread.join(2)
    assert not p._thread.is_alive()


def test_a_failing_batch_stops_the_training_loop_with_its_own_error(tmp_path, monkeypatch):
    """The loop's prefetch thread makes the batch of step 3, which raises: train() raises that very
    exception (after steps 0-2), and no prefetch thread is left running."""
    from jaxgen.tasks.base import Task

    error, original = Boom("record 3 is corrupt"), Task.host_batch

    def host_batch(self, step, *args):
        if step == 3:
            raise error
        return original(self, step, *args)

    monkeypatch.setattr(Task, "host_batch", host_batch)
    config = config_lib.load("vae_digits:quick", ["--config.train.steps=6", "--config.train.ckpt_every=2",
                                                  "--config.train.sample_every=0"])
    with pytest.raises(Boom) as e:
        loop.train(config, str(tmp_path), quiet=True)
    assert e.value is error
    assert not [t for t in threading.enumerate() if t.name == "jaxgen-prefetch" and t.is_alive()]


# ------------------------------------------------------------------------------------ random crop
def test_random_crop_is_a_per_example_window_of_the_padded_image():
    images = jnp.arange(16 * 8 * 8 * 2, dtype=jnp.int32).reshape(16, 8, 8, 2)
    keys = jax.random.split(jax.random.PRNGKey(0), 16)
    out = np.asarray(jax.jit(transforms.random_crop, static_argnums=2)(images, keys, 2))
    padded = np.pad(np.asarray(images), ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    offsets = set()
    for o, p in zip(out, padded):
        found = [(dy, dx) for dy in range(5) for dx in range(5) if np.array_equal(o, p[dy:dy + 8, dx:dx + 8])]
        assert len(found) == 1
        offsets.add(found[0])
    assert len(offsets) > 4  # the examples draw their own offsets
    # per-example keys: an example's crop does not depend on the rest of the batch
    np.testing.assert_array_equal(np.asarray(transforms.random_crop(images[3:7], keys[3:7], 2)), out[3:7])
    assert transforms.random_crop(images, keys, 0) is images
    inputs = {"image": images, "label": jnp.arange(16), "key": keys}
    cropped = transforms.crop_inputs(inputs, 2)
    assert cropped["label"] is inputs["label"] and cropped["key"] is keys and cropped["image"].shape == images.shape
    assert not np.array_equal(np.asarray(cropped["image"]), out)  # its own stream, apart from the keys' other draws
    assert transforms.crop_inputs(inputs, 0) is inputs


def test_random_crop_is_off_by_default_and_refused_where_unsupported(tmp_path):
    assert config_lib.load("vae_digits").data.random_crop == 0
    with pytest.raises(config_lib.ConfigError, match=r"data.random_crop must be a number of pixels >= 0"):
        config_lib.validate(config_lib.load("vae_digits", ["--config.data.random_crop=-1"]))
    config = config_lib.load("vae_digits:quick", ["--config.data.random_crop=2"])
    with pytest.raises(TaskError, match=r"^task vae does not crop its training images; set data.random_crop=0.$"):
        loop.train(config, str(tmp_path / "run"), quiet=True)
    assert not (tmp_path / "run").exists()
