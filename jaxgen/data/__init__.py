"""Datasets and the input pipeline: `load(name, split)` -> `Dataset` (the split in host memory, or
streamed from its ArrayRecord files by random access: jaxgen.data.streaming),
`Dataset.batch(seed, step, global_batch_size, ...)` (the batch of a step, a pure function),
`select_classes(dataset, classes)` (the examples of some labels, config data.classes), and the
embedded datasets' TFDS builders in `digits` and `shapes`."""
from jaxgen.data.pipeline import (DataError, Dataset, check_divisible, clear_cache, default_data_dir,
                                  load, select_classes)

__all__ = ["DataError", "Dataset", "check_divisible", "clear_cache", "default_data_dir", "load",
           "select_classes"]
