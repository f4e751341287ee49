"""The `digits` dataset: the 1,797 8x8 handwritten digits that ship inside scikit-learn.

Pixels are integers 0..16 (17 levels), labels 0..9. Split: index % 5 == 0 in scikit-learn's order
is `test` (360 images), the rest is `train` (1,437). `Digits` is the TFDS builder that
`jaxgen.data.load("digits", split)` prepares on first use.
"""
import numpy as np
import tensorflow_datasets as tfds

SPLITS = ("train", "test")
NUM_LEVELS = 17


def digits_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns (images uint8 [N, 8, 8, 1] in 0..16, labels int64 [N]) of one split."""
    if split not in SPLITS:
        raise ValueError(f"digits has splits {SPLITS}, not {split!r}.")
    from sklearn.datasets import load_digits  # here: scikit-learn takes a second to import, and only a build needs it

    bunch = load_digits()
    index = np.arange(len(bunch.target))
    keep = (index % 5 == 0) if split == "test" else (index % 5 != 0)
    images = bunch.images[keep].astype(np.uint8)[..., None]
    return images, bunch.target[keep].astype(np.int64)


class Digits(tfds.core.GeneratorBasedBuilder):
    """TFDS builder of `digits`: image uint8 [8, 8, 1] in 0..16, label int64 0..9 (ClassLabel).

    Records are written in scikit-learn's order (shuffling disabled), so record i of a split is
    row i of `digits_arrays(split)`. Array_record files, readable with `tfds.data_source`
    without TensorFlow.
    """

    name = "digits"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    # TFDS looks for a download-checksums file beside the builder's code via `importlib_resources`, a
    # backport it installs only for Python < 3.9 (so the lookup fails); nothing is downloaded here.
    code_path = None

    def _info(self) -> tfds.core.DatasetInfo:
        # Built outside a TFDS package folder, so the info is spelled out here (TFDS's
        # dataset_info_from_configs would look for the folder's metadata files).
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                # A plain Tensor (tfds.features.Image needs TensorFlow to encode numpy arrays),
                # stored as raw bytes rather than the default int64 list entry per pixel.
                "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8,
                                              encoding=tfds.features.Encoding.BYTES),
                "label": tfds.features.ClassLabel(names=[str(d) for d in range(10)]),
            }),
            supervised_keys=("image", "label"),
            disable_shuffling=True,  # keep scikit-learn's order
            homepage="https://archive.ics.uci.edu/dataset/80",
            license="CC BY 4.0",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # the data ships inside scikit-learn
        return {split: self._generate_examples(split) for split in SPLITS}

    def _generate_examples(self, split: str):
        images, labels = digits_arrays(split)
        for i, (image, label) in enumerate(zip(images, labels)):
            yield i, {"image": image, "label": label}
