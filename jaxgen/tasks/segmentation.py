"""Semantic segmentation with the U-Net, as the U-Net was proposed (Ronneberger et al. 2015):
per-pixel classes of the `shapes` scenes (0 background, 1 circle, 2 square, 3 triangle)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgen.data import shapes as shapes_lib
from jaxgen.data import transforms
from jaxgen.eval.images import make_grid
from jaxgen.nn.unet import UNet
from jaxgen.tasks.base import Task, TaskError, check_channels, check_range
from jaxgen.train import precision

NUM_CLASSES = 1 + len(shapes_lib.SHAPES)
# Mask colours for figures: background black, then one colour per shape class.
PALETTE = np.array([[0, 0, 0], [230, 80, 60], [70, 160, 230], [240, 200, 60]], np.float32) / 255.0


def iou_per_class(pred: np.ndarray, true: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Intersection over union of each class over a whole split: pred, true int [N, H, W] -> [classes]."""
    inter = np.bincount(true[pred == true].ravel(), minlength=num_classes)
    area_pred = np.bincount(pred.ravel(), minlength=num_classes)
    area_true = np.bincount(true.ravel(), minlength=num_classes)
    return inter / np.maximum(area_pred + area_true - inter, 1)


class SegmentationTask(Task):
    batch_keys = ("image", "mask")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if "mask" not in dataset.arrays:
            raise TaskError(f"segmentation needs a dataset with masks (shapes), not {dataset.name}.")
        m = config.model
        check_channels("model.channels", m.channels)
        check_range("model.dropout", m.dropout, 0.0, 1.0)
        self.model = UNet(out_channels=NUM_CLASSES, channels=tuple(m.channels), num_res_blocks=m.num_res_blocks,
                          attention_levels=tuple(m.attention_levels), upsample=m.upsample, dropout=m.dropout,
                          norm_groups=m.norm_groups, dtype=precision.compute_dtype(config))

    def init_params(self, rng):
        x = jnp.zeros((1,) + self.dataset.arrays["image"].shape[1:], jnp.float32)
        return self.model.init(rng, x)["params"]

    def logits(self, params, images, train=False, keys=None):
        """uint8 images [B, H, W, 3] -> per-pixel class logits float32 [B, H, W, classes] (float32 also
        under bfloat16 compute: the softmax cross-entropy takes them)."""
        x = transforms.to_unit(images, self.dataset.num_levels)
        if not train:
            return self.model.apply({"params": params}, x).astype(jnp.float32)
        # Per-example dropout keys: the step does not depend on how the batch is split.
        def one(xi, k):
            return self.model.apply({"params": params}, xi[None], train=True, rngs={"dropout": k})[0]

        return jax.vmap(one)(x, keys).astype(jnp.float32)

    def loss_and_grads(self, params, inputs):
        """Per-pixel cross-entropy gradient over `inputs` {"image", "mask", "key": the examples' own
        dropout keys [b, 2]}: (grads, {"loss", "pixel_accuracy"}, None), see accumulate."""
        labels = inputs["mask"].astype(jnp.int32)

        def loss_fn(p):
            logits = self.logits(p, inputs["image"], train=True, keys=inputs["key"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return grads, {"loss": loss, "pixel_accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}, None

    def sample(self, params, rng, num):
        raise TaskError("segmentation is not a generative model; see `jaxgen eval` for its figures.")

    def predict(self, params, images: np.ndarray, batch_size: int = 100) -> np.ndarray:
        """uint8 images [N, H, W, 3] -> predicted classes int [N, H, W]."""
        fn = jax.jit(lambda p, x: jnp.argmax(self.logits(p, x), -1))
        return np.concatenate([np.asarray(fn(params, images[i:i + batch_size]))
                               for i in range(0, len(images), batch_size)])

    def evaluate(self, state):
        """IoU per class on the test split, their mean (mIoU) and pixel accuracy."""
        test = self.eval_dataset()
        pred = self.predict(self.eval_params(state), test.arrays["image"], self.config.eval.batch_size)
        true = test.arrays["mask"].astype(np.int64)
        iou = iou_per_class(pred, true)
        names = ("background",) + tuple(shapes_lib.SHAPES)
        return {"test_miou": float(iou.mean()), "test_miou_shapes": float(iou[1:].mean()),
                **{f"test_iou_{n}": float(v) for n, v in zip(names, iou)},
                "test_pixel_accuracy": float(np.mean(pred == true)), "num_test": int(len(true))}

    def figures(self, state):
        """Rows of (test image, true mask, predicted mask) for 16 test scenes."""
        test = self.eval_dataset()
        images = test.arrays["image"][:16]
        pred = self.predict(self.eval_params(state), images)
        rows = [images.astype(np.float32) / 255.0, PALETTE[test.arrays["mask"][:16]], PALETTE[pred]]
        triplets = np.stack(rows, 1).reshape(-1, *rows[0].shape[1:])
        return {"segmentation": make_grid(triplets, columns=6)}
