"""A split read by random access: the rows a batch needs are read and decoded when it needs them.

`StreamedArrays` stands where an in-memory split keeps its dict of arrays (`Dataset.arrays`): a
mapping from feature name to `Column`, over a TFDS data source (`tfds.data_source` /
`builder.as_data_source`, ArrayRecord files with one record per group, so any record is one seek
away). Host memory holds the source's index and the rows of the batches in flight, never the split:
ImageNet 64x64 (1.28 M images, about 15 GB as uint8) trains with the same resident memory as a
thousand images.

A `Column` is a lazy stand-in for one feature's array [N, ...]: `shape`, `dtype` and `len` are
known without reading anything (from the first record), indexing by an int, a slice or an index
array reads only those rows, and anything else (`np.asarray(column)`, `.astype`, `.mean`, ufuncs,
iteration) reads the whole feature once and works on that array, so code written for an in-memory
split (evaluation on a test split, a task reading an image shape) keeps working. Whole features of
up to CACHE_BYTES are kept after the first such read; larger ones are read again each time.

Records are decoded exactly as the in-memory split decodes them (`read_all` is the same code over
every row): nested features become "a/b" keys, text becomes str, a grayscale "image" [H, W] gets a
channel axis. A split whose images vary in size (a TFDS Image feature of shape (None, None, C), e.g.
cycle_gan's) is read with `image_size` S: each record's "image" is resized to [S, S, C] as it is
decoded (`resize_image`), so its rows stack into one array like those of a fixed-size split.
"""
from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

log = logging.getLogger(__name__)

#: a whole feature read for a caller that needs it (Column.__array__) is kept up to this size
CACHE_BYTES = 256 * 2**20
#: records read per call of the source when a whole feature is read (bounds the decoded rows alive)
CHUNK = 1024


class StreamedArrays(Mapping):
    """Feature name -> Column of one split on disk, rows read on demand.

    source: a TFDS data source (len, __getitem__, and usually the batched __getitems__).
    index: int64 [n], row i of this split is record index[i] of the source (select_classes keeps
      some rows this way); None for every record in order.
    image_size: S: every record's "image" [h, w, C] (any h, w) is resized to [S, S, C] when decoded
      (`resize_image`); None: images as stored (then all of one size).
    """

    def __init__(self, source, where: str, index: np.ndarray | None = None,
                 specs: dict[str, tuple[tuple[int, ...], np.dtype]] | None = None, image_size: int | None = None):
        self._source = source
        self.where = where  # "name:split", for messages
        self._index = None if index is None else np.asarray(index, np.int64)
        self.num_rows = len(source) if index is None else len(self._index)
        self.image_size = image_size
        # key -> (shape of one row, dtype), from the first record (every record has the same).
        self._specs = specs if specs is not None else _specs(self._decode(_read(source, [0])[0]))
        self._columns = {k: Column(self, k) for k in self._specs}
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()  # one whole-feature read at a time (the prefetch thread reads too)
        self._partial = _partial_reader(source)

    # ---- Mapping -------------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Column:
        return self._columns[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)

    def __repr__(self) -> str:
        return f"StreamedArrays({self.where}, {self.num_rows} rows, features {sorted(self._specs)})"

    def spec(self, key: str) -> tuple[tuple[int, ...], np.dtype]:
        """(shape of one row, dtype) of feature `key`; str features have dtype kind 'U'."""
        return self._specs[key]

    # ---- reading rows --------------------------------------------------------------------------
    def take(self, rows: np.ndarray | Sequence[int], keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The features `keys` (default all) of `rows` (ints in [0, num_rows), any order, repeats
        allowed): {key: array [len(rows), ...]}, read by random access in that order."""
        rows = np.asarray(rows, np.int64)
        if rows.ndim != 1:  # an index array of any shape: its rows, then that shape back
            flat = self.take(rows.reshape(-1), keys)
            return {k: v.reshape(rows.shape + v.shape[1:]) for k, v in flat.items()}
        keys = list(self._specs) if keys is None else list(keys)
        if rows.size and (rows.min() < 0 or rows.max() >= self.num_rows):
            bad = int(rows[(rows < 0) | (rows >= self.num_rows)][0])
            raise IndexError(f"row {bad} is outside the {self.num_rows} rows of {self.where}.")
        records = rows if self._index is None else self._index[rows]
        out = _empty(self._specs, keys, len(rows))
        read = self._partial(keys) if self._partial is not None else functools.partial(_read, self._source)
        for start in range(0, len(records), CHUNK):
            chunk = records[start:start + CHUNK]
            _fill(out, [self._decode(r) for r in read(chunk.tolist())], start)
        return _finish(out)

    def read_all(self) -> dict[str, np.ndarray]:
        """Every feature of every row, in order: what an in-memory split holds."""
        return self.take(np.arange(self.num_rows))

    def subset(self, rows: np.ndarray) -> StreamedArrays:
        """The same split narrowed to `rows` (int [m], into this one's rows), still on disk."""
        rows = np.asarray(rows, np.int64)
        index = rows if self._index is None else self._index[rows]
        return StreamedArrays(self._source, self.where, index, self._specs, self.image_size)

    def _decode(self, record: dict) -> dict:
        """`_decode`, then the image resized to image_size when one is set."""
        flat = _decode(record)
        if self.image_size is not None and "image" in flat:
            flat["image"] = resize_image(flat["image"], self.image_size)
        return flat

    def materialize(self, key: str) -> np.ndarray:
        """Feature `key` of every row [num_rows, ...], read-only; kept when at most CACHE_BYTES."""
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            shape, dtype = self._specs[key]
            size = self.num_rows * int(np.prod(shape, dtype=np.int64)) * max(dtype.itemsize, 1)
            if size > CACHE_BYTES:
                log.warning("Reading feature %r of %s whole (%.3g GB) for a caller that needs all of it.",
                            key, self.where, size / 1e9)
            array = self.take(np.arange(self.num_rows), [key])[key]
            array.flags.writeable = False
            if size <= CACHE_BYTES:
                self._cache[key] = array
            return array


class Column(np.lib.mixins.NDArrayOperatorsMixin):
    """A lazy view of one feature of a StreamedArrays: shape [N, ...] and dtype without reading;
    `column[i]`, `column[a:b]`, `column[int_array]` read those rows only; anything else reads the
    whole feature (see the module docstring)."""

    def __init__(self, parent: StreamedArrays, key: str):
        self.parent = parent
        self.key = key

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.parent.num_rows,) + tuple(self.parent.spec(self.key)[0])

    @property
    def dtype(self) -> np.dtype:
        return self.parent.spec(self.key)[1]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.parent.num_rows

    def __repr__(self) -> str:
        return f"Column({self.key!r} of {self.parent.where}, shape {self.shape}, {self.dtype})"

    def __getitem__(self, index):
        rest = ()
        if isinstance(index, tuple):  # rows first, then within each row
            index, rest = (index[0], index[1:]) if index else (slice(None), ())
        if isinstance(index, (int, np.integer)):
            i = int(index) + (self.parent.num_rows if index < 0 else 0)
            row = self.parent.take([i], [self.key])[self.key][0]
            return row[rest] if rest else row
        if isinstance(index, slice):
            rows = np.arange(self.parent.num_rows)[index]
        else:
            rows = np.asarray(index)
            if rows.dtype == bool:
                rows = np.flatnonzero(rows)
            elif rows.size == 0:
                rows = rows.astype(np.int64)
            elif rows.dtype.kind not in "iu":
                raise IndexError(f"a streamed column is indexed by ints, slices or index arrays, not {index!r}.")
            rows = np.where(rows < 0, rows + self.parent.num_rows, rows)
        out = self.parent.take(rows, [self.key])[self.key]
        return out[(slice(None),) + rest] if rest else out

    # Everything else sees the whole feature.
    def __array__(self, dtype=None, copy=None):
        array = self.parent.materialize(self.key)
        if dtype is not None and np.dtype(dtype) != array.dtype:
            return array.astype(dtype)
        return array.copy() if copy else array

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        inputs = tuple(np.asarray(x) if isinstance(x, Column) else x for x in inputs)
        return getattr(ufunc, method)(*inputs, **kwargs)

    def __iter__(self):
        return iter(np.asarray(self))

    def __getattr__(self, name: str):
        # Only reached for what Column lacks (astype, mean, tolist, flags, ...). Private and dunder
        # names are not forwarded: copy/pickle probing must not read a whole split.
        if name.startswith("_") or name in ("parent", "key"):
            raise AttributeError(name)
        return getattr(np.asarray(self), name)


# ---------------------------------------------------------------------------------------- records
def _read(source, keys: list[int]) -> list:
    """Records `keys` of a data source: batched (array_record reads them in parallel threads), or
    one by one where the batched read fails, as that of `tfds.testing.mock_data` does (its mocked
    __getitems__ takes other arguments)."""
    try:
        return list(source.__getitems__(keys))
    except (TypeError, AttributeError):
        return [source[i] for i in keys]


def _partial_reader(source):
    """For a TFDS ArrayRecord source: keys -> a reader of records that parses and decodes only the
    top-level features holding `keys` (TFDS's own parser and decoders over a FeaturesDict of those
    features; a shapes batch of images alone decodes several times faster than whole records).
    None for another source, e.g. that of `tfds.testing.mock_data`, whose records are not bytes."""
    raw, info = getattr(source, "data_source", None), getattr(source, "dataset_info", None)
    if raw is None or info is None or getattr(source, "decoders", None) is not None:
        return None
    if getattr(source, "deserialize_method", None) is not tfds.decode.DeserializeMethod.DESERIALIZE_AND_DECODE:
        return None
    features = info.features
    if "deserialize_example_np" in vars(features):  # patched by mock_data: it serves decoded examples
        return None

    @functools.lru_cache(maxsize=16)
    def parser(top: tuple[str, ...]):
        return tfds.features.FeaturesDict({k: features[k] for k in top})

    def reader(keys: Sequence[str]):
        sub = parser(tuple(sorted({k.split("/")[0] for k in keys})))
        return lambda ids: [sub.deserialize_example_np(r) for r in raw.__getitems__(ids)]

    return reader


def _decode(record: dict) -> dict:
    """One record as flat {key: value}: nested features become "a/b" keys, text becomes str, a
    grayscale "image" [H, W] gets its channel axis [H, W, 1]."""
    flat = _flatten(record)
    for key, v in flat.items():
        if isinstance(v, (bytes, np.bytes_, str)) or (isinstance(v, np.ndarray) and v.dtype == object):
            v = v.item() if isinstance(v, np.ndarray) else v
            flat[key] = v.decode("utf-8") if isinstance(v, bytes) else str(v)
    image = flat.get("image")
    if isinstance(image, np.ndarray) and image.ndim == 2:
        flat["image"] = image[..., None]
    return flat


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 [h, w, C] -> [size, size, C], bicubic (PIL's, as torchvision's Resize of the CycleGAN
    reference code); the image itself when already that size. Aspect ratios are not kept: a
    non-square image is stretched to the square, as that code's resize to (286, 286) does."""
    if image.shape[:2] == (size, size):
        return image
    channels = image.shape[2]
    im = Image.fromarray(image[..., 0] if channels == 1 else image)
    out = np.asarray(im.resize((size, size), Image.Resampling.BICUBIC))
    return out.reshape(size, size, channels)


def _flatten(record: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in record.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _specs(record: dict) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    return {k: ((), np.dtype(str)) if isinstance(v, str) else (np.shape(v), np.asarray(v).dtype)
            for k, v in record.items()}


def _empty(specs, keys: Sequence[str], n: int) -> dict:
    """Output buffers: an array [n, ...] per numeric feature, a list per text feature."""
    missing = [k for k in keys if k not in specs]
    if missing:
        raise KeyError(missing[0])
    return {k: [None] * n if specs[k][1].kind == "U" else np.empty((n,) + specs[k][0], specs[k][1]) for k in keys}


def _fill(out: dict, records: list[dict], start: int) -> None:
    for key, buf in out.items():
        for j, r in enumerate(records):
            buf[start + j] = r[key]


def _finish(out: dict) -> dict[str, np.ndarray]:
    return {k: (np.asarray(v) if v else np.empty(0, str)) if isinstance(v, list) else v for k, v in out.items()}
