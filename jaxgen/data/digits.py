"""The `digits` dataset: the 1,797 8x8 handwritten digits that ship inside scikit-learn.

Pixels are integers 0..16 (17 levels), labels 0..9. Split: index % 5 == 0 in scikit-learn's order
is `test` (360 images), the rest is `train` (1,437).
"""
import numpy as np

SPLITS = ("train", "test")
NUM_LEVELS = 17


def digits_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns (images uint8 [N, 8, 8, 1] in 0..16, labels int64 [N]) of one split."""
    if split not in SPLITS:
        raise ValueError(f"digits has splits {SPLITS}, not {split!r}.")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    index = np.arange(len(bunch.target))
    keep = (index % 5 == 0) if split == "test" else (index % 5 != 0)
    images = bunch.images[keep].astype(np.uint8)[..., None]
    return images, bunch.target[keep].astype(np.int64)
