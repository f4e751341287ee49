"""CLIP on CIFAR-100 with captions made from its 100 fine class names ("a photo of a maple tree."),
read back zero-shot: clip_cifar10's model, captions, optimizer and schedule (see there) on TFDS
`cifar100` (its `label` feature: the 100 fine classes; the 20 coarse ones are not used).
`jaxgen eval` reports test_zeroshot_accuracy and test_zeroshot_accuracy_ensemble over the 10,000
test images (top-1 of 100). Parameters: 6,640,642 + 256 x V, V the caption vocabulary (the template
words, every word of the 100 class names as TFDS stores them, the special tokens); the names come
from the prepared dataset's info, so V is known once the data is (the test asserts the formula on
mock data). No paper number applies (see clip_cifar10); no measured result yet.

    python -c "import tensorflow_datasets as tfds; tfds.builder('cifar100').download_and_prepare()"
    jaxgen train clip_cifar100 --workdir runs/clip_cifar100
    jaxgen eval --workdir runs/clip_cifar100

Expected cost on one H100: as clip_cifar10 (an estimate, not a measurement): minutes for the
10,000 steps, likely bound by the host's caption tokenising.

Variants: 'mock' (also 'quick'), clip_cifar10's toy run on cifar100 under `tfds.testing.mock_data`;
'demo', the full config.
"""
import ml_collections

from jaxgen.configs import clip_cifar10, common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    return common.apply_variant(clip_cifar10.base("cifar100"), arg,
                                {"demo": None, "mock": clip_cifar10.mock, "quick": clip_cifar10.mock},
                                name="clip_cifar100")
