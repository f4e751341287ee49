"""CLIP on CIFAR-10 with captions made from the class names, read back zero-shot: the contrastive
objective of Radford et al. (2021), "Learning Transferable Visual Models From Natural Language
Supervision" (arXiv:2103.00020), on (image, "a photo of a {class}.") pairs.

Data: TFDS `cifar10`; each training image gets one of six prompt templates (jaxgen.tasks.clip
.CLASS_TEMPLATES: "a photo of a {}.", "a blurry photo of a {}.", ...) filled with its class name as
TFDS's info stores it (features["label"].names: airplane, automobile, ...), a pure function of
(seed, step, row); images shifted by up to 2 pixels. Model: the CLIP task's CNN image tower (three
stride-2 stages of 64, 128, 256 channels, GroupNorm, GELU, residual convs; 512-wide features) and
its 4-block text transformer (width 256, 4 heads, context 16), both projected to 256 dimensions;
the softmax (InfoNCE) loss over the global batch of 512 with the learned temperature (logit scale
clamped at 100), AdamW at 1e-3 with 500 warm-up steps and cosine decay, weight decay 0.05; 10,000
steps (102 epochs). `jaxgen eval` reports test_zeroshot_accuracy (top-1 over the 10,000 test
images, each given the class whose prompt "a photo of a {class}." embeds nearest) and
test_zeroshot_accuracy_ensemble (the six templates' embeddings averaged per class).
Parameters: 6,640,642 + 256 x V, V the vocabulary of the captions (the template words, the class
names' words and the special tokens: V = 25 for CIFAR-10's ten one-word names, 6,647,042 in all),
asserted by tests/configs/test_reference_families.py.

Their numbers: CLIP was trained on 400 M web (image, text) pairs, not on CIFAR captions, and its
CIFAR zero-shot accuracies measure transfer from that data; they are not comparable with a model
whose captions name the very labels it is tested on (which makes this a classifier trained through
its text tower), so none is quoted. This config has no measured result yet.

    # the data, once (TFDS needs TensorFlow and the network: pip install 'jaxgen[catalog]')
    python -c "import tensorflow_datasets as tfds; tfds.builder('cifar10').download_and_prepare()"
    jaxgen train clip_cifar10 --workdir runs/clip_cifar10
    jaxgen eval --workdir runs/clip_cifar10          # test_zeroshot_accuracy, ..._ensemble

Expected cost on one H100 (an estimate, not a measurement: no GPU was at hand): the image tower is
about 0.09 GFLOP per 32x32 image forward and the text tower about 0.1 GFLOP per caption (XLA's
counts), so a step of 512 pairs is about 0.3 TFLOP forward and backward: 1-3 ms at 10-30 % of the
bf16 peak (`--config.train.compute_dtype=bfloat16`); at this size a step is more likely bound by
kernel launches and the host (drawing and tokenising 512 captions), 5-20 ms: the 10,000 steps take
1-4 minutes plus compilation.

Variants: 'mock' (also 'quick') is the same pipeline (cifar10's features, the class-name captions
from the TFDS info) with toy towers, batch 8, 2 steps, that the tests train on CPU under
`tfds.testing.mock_data`; 'demo' is the full config. clip_cifar100 is the same on CIFAR-100.
"""
import ml_collections

from jaxgen.configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    return common.apply_variant(base("cifar10"), arg, {"demo": None, "mock": mock, "quick": mock},
                                name="clip_cifar10")


def base(dataset: str) -> ml_collections.ConfigDict:
    """CLIP on `dataset`'s class-name captions (clip_cifar100 uses it too)."""
    c = ml_collections.ConfigDict()
    c.task = "clip"
    c.seed = 0
    # captions 'class_names': "a photo of a {class}." and its siblings, from the TFDS info's names.
    c.data = dict(name=dataset, split="train", eval_split="test", data_dir=None, caption_styles=(),
                  captions="class_names")
    c.model = dict(image_size=32, image_tower="cnn", image_channels=(64, 128, 256), image_width=512,
                   patch_size=4, vit_depth=4, context_length=16, text_width=256, text_depth=4, num_heads=4,
                   embed_dim=256, loss="softmax")
    c.optim = dict(name="adamw", lr=1e-3, warmup_steps=500, schedule="cosine", grad_clip=1.0, weight_decay=0.05)
    c.train = common.train_section(steps=10_000, batch_size=512, log_every=200, ckpt_every=2000, augment_shift=2)
    c.eval = dict(batch_size=500)
    return c


def mock(c: ml_collections.ConfigDict) -> None:
    """The same pipeline with toy towers, 2 steps of batch 8 (tfds.testing.mock_data's splits hold
    as few examples as it is asked for)."""
    c.model.update(image_channels=(8,), image_width=16, text_width=16, text_depth=1, num_heads=2, embed_dim=16)
    c.optim.warmup_steps = 1
    c.train.update(steps=2, batch_size=8, log_every=1, ckpt_every=2)
    c.eval.update(batch_size=8)
