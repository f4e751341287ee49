"""The input pipeline: a dataset split, and the batch of each step as a pure function.

`load(name, split)` returns a `Dataset` whose `arrays` map feature names to arrays with a leading
example axis (images uint8 NHWC). Names:
  * `digits`, `shapes` (and `shapes/tiny`, a small config for tests) ship with jaxgen: their TFDS
    builders run on first use, into `data_dir` (default: $JAXGEN_DATA_DIR, else
    ~/.cache/jaxgen/datasets), and are never rebuilt once prepared;
  * a folder holding a prepared TFDS dataset (its dataset_info.json and ArrayRecord files, e.g.
    written by any TFDS builder with file_format="array_record"), by its path;
  * any other name is a TFDS catalog dataset (mnist, fashion_mnist, cifar10, ...), read with
    `tfds.data_source` from `data_dir` (default: $JAXGEN_DATA_DIR, else TFDS's own default); it is
    prepared there if TFDS can (that needs TensorFlow, the `catalog` extra, and the network).

Where the split lives: the embedded datasets (a few MB) are read whole into host memory, `arrays`
a dict of numpy arrays. Every other split streams (jaxgen.data.streaming): `arrays` is a lazy
mapping over the ArrayRecord files and a batch reads only this process's rows of it by random
access, so host memory does not grow with the split (ImageNet-sized splits train like small ones).
`load(..., in_memory=True / False)` overrides the default either way; the batches are the same.
`load(..., image_size=S)` resizes every image to S x S as it is read (bicubic, on the host; see
jaxgen.data.streaming.resize_image): the way to read a split whose images vary in size.

Building is safe against interruption and concurrency: TFDS writes a version into an
`incomplete.*` folder and renames it when done, so a killed build never looks prepared; builds take
an exclusive file lock (two processes of a multi-host run on one machine build once), and the
process holding it clears what killed builds left behind.

`Dataset.batch(seed, step, B)` is the global batch of `step`: epoch e = step // (N // B) (the last
partial batch of an epoch is dropped), order `np.random.default_rng([seed, e]).permutation(N)`. It
depends on nothing else, so a resumed run replays exactly; each process takes its contiguous
B / process_count rows (and a streamed split reads only those).

`select_classes(dataset, classes)` keeps the examples of some labels (config `data.classes`, applied
to a task's training split by `Task.__init__`): the rows of those labels in their stored order, with
`num_classes` unchanged, so a class-conditional model keeps an embedding row for a held-out class
(e.g. one a LoRA adapter teaches it later). Its batches are then those of a smaller split, still a
pure function of (seed, step).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import logging
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from jaxgen.data.digits import Digits
from jaxgen.data.shapes import Shapes
from jaxgen.data.streaming import Column, StreamedArrays
from jaxgen.errors import UserError

EMBEDDED = ("digits", "shapes")
DEFAULT_DATA_DIR = "~/.cache/jaxgen/datasets"
_EMBEDDED_SPLITS = ("train", "test")

log = logging.getLogger(__name__)


class DataError(UserError, ValueError):
    """A dataset, split or batch size that cannot be served, in one sentence."""


# ------------------------------------------------------------------------------------ dataset
@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """One split of a dataset, in host memory or streamed from disk.

    arrays: feature name -> array with a leading example axis [N, ...]; images uint8 [N, H, W, C],
      labels int64 [N], text features str [N]. Read-only: they are shared through the load cache.
      A streamed split's is a `StreamedArrays`, whose values are lazy `Column`s: shape and dtype
      known, rows read when indexed, the whole feature read only for code that needs all of it.
    num_levels: distinct pixel values (17 for digits, 256 for uint8 images).
    num_classes: classes of the `label` feature, None when there is none; the classes of the
      dataset, even where `classes` keeps only some of them.
    classes: the labels this split was narrowed to by `select_classes`, None when it holds every class.
    """

    name: str
    split: str
    arrays: Mapping[str, np.ndarray | Column]
    num_examples: int
    num_levels: int
    num_classes: int | None
    image_key: str = "image"
    classes: tuple[int, ...] | None = None

    def batch(self, seed: int, step: int, global_batch_size: int, process_index: int = 0,
              process_count: int = 1, *, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """This process's rows [global_batch_size // process_count, ...] of the global batch of
        `step` (all features, or only `keys`). Process p holds rows [p * b, (p + 1) * b) of it; a
        streamed split reads those rows alone, by random access."""
        b = _check_batch(self, global_batch_size, process_count)
        if not 0 <= process_index < process_count:
            raise DataError(f"process index {process_index} is outside 0..{process_count - 1}.")
        if step < 0 or seed < 0:
            raise DataError(f"the seed and the step must be non-negative, not {seed} and {step}.")
        steps_per_epoch = self.num_examples // global_batch_size
        epoch, within = divmod(step, steps_per_epoch)
        order = _permutation(seed, epoch, self.num_examples)
        rows = order[within * global_batch_size:(within + 1) * global_batch_size]
        rows = rows[process_index * b:(process_index + 1) * b]
        names = list(self.arrays) if keys is None else list(keys)
        missing = [k for k in names if k not in self.arrays]
        if missing:
            raise DataError(f"{self.name} has no feature {missing[0]!r}; it has "
                            f"{', '.join(sorted(self.arrays))}.")
        return _take(self.arrays, rows, names)

    @property
    def streamed(self) -> bool:
        """Whether the split is read from disk by random access (else it is in host memory)."""
        return any(isinstance(v, Column) for v in self.arrays.values())


def _take(arrays: Mapping, rows: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """{name: arrays[name][rows]}, reading each streamed record once for all the names it holds
    (a dict may mix in-memory arrays with columns of one or more streamed splits)."""
    out, streamed = {}, {}
    for k in names:
        v = arrays[k]
        if isinstance(v, Column):
            streamed.setdefault(id(v.parent), (v.parent, []))[1].append(k)
        else:
            out[k] = v[rows]
    for parent, ks in streamed.values():
        read = parent.take(rows, sorted({arrays[k].key for k in ks}))
        out.update({k: read[arrays[k].key] for k in ks})
    return {k: out[k] for k in names}


@functools.lru_cache(maxsize=4)
def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The example order of one epoch (cached: consecutive steps share it; 8 bytes per example,
    the only per-example memory a streamed split holds, hence a short cache)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def _check_batch(dataset: Dataset, global_batch_size: int, process_count: int) -> int:
    """The per-process batch size, after checking the global one fits the split and the processes."""
    if global_batch_size <= 0:
        raise DataError(f"the global batch size must be positive, not {global_batch_size}.")
    if global_batch_size > dataset.num_examples:
        kept = "" if dataset.classes is None else f" that data.classes {dataset.classes} keeps"
        raise DataError(f"the global batch size {global_batch_size} is larger than the "
                        f"{dataset.num_examples} examples of {dataset.name}:{dataset.split}{kept}.")
    if process_count <= 0 or global_batch_size % process_count:
        raise DataError(f"the global batch size {global_batch_size} is not divisible by the "
                        f"{process_count} processes; use a multiple of {process_count}.")
    return global_batch_size // process_count


def check_divisible(global_batch_size: int, num_devices: int) -> None:
    """Raises DataError unless the global batch splits evenly over the devices."""
    if global_batch_size <= 0:
        raise DataError(f"the global batch size must be positive, not {global_batch_size}.")
    if global_batch_size % num_devices:
        raise DataError(f"global batch size {global_batch_size} is not divisible by the "
                        f"{num_devices} devices; use a multiple of {num_devices}.")


# ------------------------------------------------------------------------------------ classes
LABEL_KEY = "label"


def select_classes(dataset: Dataset, classes: Sequence[int] | None) -> Dataset:
    """`dataset` narrowed to the examples whose label is in `classes` (config data.classes), or
    `dataset` itself for None.

    The kept rows stay in their stored order (so the narrowed split, and every batch of it, is a
    pure function of the split and `classes`); every feature is narrowed alike; `num_classes` is
    unchanged. DataError, in one sentence, when `classes` is empty, when the dataset has no labels,
    when a label is not one of its classes, or when a kept class has no example in this split.
    """
    if classes is None:
        return dataset
    where = f"{dataset.name}:{dataset.split}"
    if isinstance(classes, (str, bytes)) or not all(
            isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_)) for c in classes):
        raise DataError(f"data.classes must be a tuple of class labels (integers) such as (9,), not {classes!r}.")
    wanted = tuple(int(c) for c in classes)
    if not wanted:
        raise DataError("data.classes must list at least one class, or be None to keep every class.")
    labels = dataset.arrays.get(LABEL_KEY)
    if labels is not None:
        labels = np.asarray(labels)  # a streamed split reads its labels alone, never its images
    if labels is None:
        raise DataError(f"data.classes keeps examples by their label, but {where} has no {LABEL_KEY!r} "
                        f"feature; leave data.classes at None for an unlabelled dataset.")
    known = range(dataset.num_classes) if dataset.num_classes else sorted(set(labels.tolist()))
    unknown = [c for c in wanted if c not in known]
    if unknown:
        listed = f"0..{dataset.num_classes - 1}" if dataset.num_classes else ", ".join(map(str, known))
        raise DataError(f"data.classes names label {unknown[0]}, which is not a class of {dataset.name} "
                        f"(its labels are {listed}).")
    keep = np.isin(labels, wanted)
    missing = [c for c in wanted if not np.any(labels == c)]
    if missing:
        raise DataError(f"data.classes keeps class {missing[0]}, but {where} has no example of it.")
    rows = np.flatnonzero(keep)
    if isinstance(dataset.arrays, StreamedArrays):  # still on disk: the kept rows as an index
        arrays = dataset.arrays.subset(rows)
    else:
        arrays = {}
        for key, values in dataset.arrays.items():
            arrays[key] = values[rows]  # a copy: the cached full split is left as it is
            arrays[key].flags.writeable = False
    return dataclasses.replace(dataset, arrays=arrays, num_examples=len(rows), classes=tuple(sorted(set(wanted))))


# ------------------------------------------------------------------------------------ load
def default_data_dir() -> str:
    """Where embedded datasets are built: $JAXGEN_DATA_DIR, else ~/.cache/jaxgen/datasets."""
    return os.path.abspath(os.path.expanduser(os.environ.get("JAXGEN_DATA_DIR") or DEFAULT_DATA_DIR))


def load(name: str, split: str, data_dir: str | None = None, *, in_memory: bool | None = None,
         image_size: int | None = None) -> Dataset:
    """The split `split` of dataset `name` (see the module docstring for names and data
    directories): read whole into host memory (`in_memory` True; the default for the embedded
    datasets) or streamed from its files (False; the default for every other dataset). With
    `image_size` S every "image" is resized to [S, S, C] as it is read (any stored size). Cached per
    (name, split, data directory, in_memory, image_size): a second load is free."""
    if in_memory is not None and not isinstance(in_memory, bool):
        raise DataError(f"in_memory must be True, False or None (the dataset's default), not {in_memory!r}.")
    if image_size is not None and not (isinstance(image_size, int) and image_size >= 1):
        raise DataError(f"image_size must be a positive number of pixels or None, not {image_size!r}.")
    if _is_directory(name):
        name, root = os.path.abspath(os.path.expanduser(name)), None
    elif _is_embedded(name):
        root = data_dir or default_data_dir()
    else:  # catalog: None lets TFDS use its own default (where prepared catalog data usually is)
        root = data_dir or os.environ.get("JAXGEN_DATA_DIR") or None
    if root is not None:
        root = os.path.abspath(os.path.expanduser(root))
    if in_memory is None:
        in_memory = _is_embedded(name)
    return _load_cached(name, split, root, in_memory, image_size)


def clear_cache() -> None:
    """Forgets the loaded splits (e.g. after deleting a data directory)."""
    _load_cached.cache_clear()


@functools.lru_cache(maxsize=16)
def _load_cached(name: str, split: str, data_dir: str | None, in_memory: bool, image_size: int | None) -> Dataset:
    if _is_directory(name):
        builder, source = _directory_source(name, split)
    elif _is_embedded(name):
        builder = _prepare_embedded(name, split, data_dir)
        source = _as_source(builder, name, split)
    else:
        builder, source = _catalog_source(name, split, data_dir)
    if len(source) == 0:
        raise DataError(f"split {split!r} of {name} is empty.")
    streamed = StreamedArrays(source, f"{name}:{split}", image_size=image_size)
    arrays = _read_all(streamed) if in_memory else streamed
    features = builder.info.features
    label = features["label"] if "label" in features.keys() else None
    num_classes = getattr(label, "num_classes", None)
    num_levels = 17 if name == "digits" else 256
    return Dataset(name=name, split=split, arrays=arrays, num_examples=streamed.num_rows,
                   num_levels=num_levels, num_classes=num_classes)


def _is_embedded(name: str) -> bool:
    return name.split("/")[0] in EMBEDDED


def _is_directory(name: str) -> bool:
    """Whether `name` is a path (absolute, ~ or ./) rather than a dataset name (catalog names such
    as "mnist/config:1.0.0" hold slashes too, never a leading one)."""
    return name.startswith(("/", "~", "./", "../"))


def _directory_source(path: str, split: str):
    """(builder, data source) of the prepared TFDS dataset in folder `path`."""
    if not os.path.isfile(os.path.join(path, "dataset_info.json")):
        raise DataError(f"{path} holds no prepared TFDS dataset (no dataset_info.json); give the "
                        f"version folder a TFDS builder wrote, e.g. <data_dir>/<name>/1.0.0.")
    try:
        builder = tfds.builder_from_directory(path)
    except Exception as e:  # noqa: BLE001 - a corrupt or foreign dataset_info.json
        raise DataError(f"cannot open the TFDS dataset in {path}: {e}") from None
    _split_names(path, split, list(builder.info.splits.keys()))
    return builder, _as_source(builder, path, split)


def _is_prepared(builder) -> bool:
    """TFDS's is_prepared, without its warning about a version folder that does not exist yet."""
    return builder.data_path.exists() and builder.is_prepared()


def _split_names(name: str, split: str, available: Sequence[str]) -> None:
    """Checks a TFDS split spec ("train", "train[:80%]", "train+test") names available splits."""
    for piece in split.split("+"):
        m = re.fullmatch(r"\s*([\w-]+)\s*(\[[^\]]*\])?\s*", piece)
        if m is None or (available and m.group(1) not in available):
            raise DataError(f"{name} has no split {split!r}; the available splits are "
                            f"{', '.join(available)}.")


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `lock_path` (created if needed), released on exit or when the
    process dies, so a killed build never blocks the next one."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _embedded_builder(name: str, data_dir: str):
    base, _, config = name.partition("/")
    cls = {"digits": Digits, "shapes": Shapes}[base]
    if config and config not in cls.builder_configs:
        known = ", ".join(f"{base}/{c}" for c in cls.builder_configs) or f"none (use {base})"
        raise DataError(f"{base} has no config {config!r}; the configs are {known}.")
    return cls(data_dir=data_dir, file_format="array_record", **({"config": config} if config else {}))


def _prepare_embedded(name: str, split: str, data_dir: str):
    """The builder of an embedded dataset, built into data_dir unless it is already there."""
    _split_names(name, split, _EMBEDDED_SPLITS)  # before a build, not after
    builder = _embedded_builder(name, data_dir)
    if _is_prepared(builder):
        return builder
    base = name.split("/")[0]
    with _exclusive(Path(data_dir) / f".{base}.lock"):
        # Re-open: another process may have finished the build while this one waited.
        builder = _embedded_builder(name, data_dir)
        if not _is_prepared(builder):
            _clear_leftovers(Path(data_dir) / base, builder.data_path)
            log.info("Building %s into %s (first use).", name, builder.data_dir)
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return builder


def _clear_leftovers(dataset_dir: Path, version_dir: Path) -> None:
    """Removes what killed builds left (TFDS's `incomplete.*` folders and files, a version folder
    without its metadata); called only under the build lock, so no live build owns them."""
    stale = list(dataset_dir.glob("incomplete.*")) + list(dataset_dir.glob("*/incomplete.*"))
    if os.path.exists(version_dir):
        stale.append(Path(version_dir))
    for path in stale:
        log.info("Removing %s, left by an interrupted build.", path)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _as_source(builder, name: str, split: str):
    try:
        return builder.as_data_source(split=split)
    except (KeyError, ValueError, AssertionError) as e:
        raise DataError(f"cannot read split {split!r} of {name}: {e}") from None


def _catalog_source(name: str, split: str, data_dir: str | None):
    """(builder, data source) of a TFDS catalog dataset, preparing it if TFDS can."""
    base = name.split("/")[0].split(":")[0]
    # Without community datasets: listing those reaches for GCS, which fails without TensorFlow.
    if base not in tfds.list_builders(with_community_datasets=False):
        raise DataError(f"unknown dataset {name!r}; expected one of the embedded datasets "
                        f"({', '.join(EMBEDDED)}) or a TFDS catalog name such as mnist or cifar10.")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # noqa: BLE001 - TFDS raises many kinds; all mean "cannot open"
        raise DataError(f"cannot open the TFDS dataset {name!r}: {e}") from None
    if _is_prepared(builder):
        _split_names(name, split, list(builder.info.splits.keys()))
        return builder, _as_source(builder, name, split)
    where = data_dir or str(builder.data_dir_root)
    with _exclusive(Path(default_data_dir()) / ".locks" / f"catalog-{base}.lock"):
        try:
            source = tfds.data_source(name, split=split, data_dir=data_dir)
        except Exception as e:  # noqa: BLE001 - missing TensorFlow, no network, bad split, ...
            again = tfds.builder(name, data_dir=data_dir)
            if _is_prepared(again):  # prepared fine: the split was the problem
                _split_names(name, split, list(again.info.splits.keys()))
                raise DataError(f"cannot read split {split!r} of {name}: {e}") from None
            raise DataError(
                f"the TFDS dataset {name!r} is not prepared in {where} and could not be prepared "
                f"here ({type(e).__name__}: {e}); preparing catalog datasets needs TensorFlow and "
                f"the network (pip install 'jaxgen[catalog]'), or pass the data_dir of a prepared "
                f"copy.") from None
    return builder, source


def _read_all(streamed: StreamedArrays) -> dict[str, np.ndarray]:
    """Every record of a split decoded into one read-only array per feature (the same decoding a
    streamed batch gets: jaxgen.data.streaming)."""
    arrays = streamed.read_all()
    for a in arrays.values():
        a.flags.writeable = False  # shared by every caller through the load cache
    return arrays
