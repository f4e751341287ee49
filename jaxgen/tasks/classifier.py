"""The digits classifier as a task. Not generative: its test accuracy is reported, and its
penultimate features are the Frechet-distance feature space of every generative family
(`jaxgen.eval.features`)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgen.data import transforms
from jaxgen.models import classifier as classifier_lib
from jaxgen.tasks.base import Task, TaskError, check_positive_int, check_range
from jaxgen.train import precision


class ClassifierTask(Task):
    batch_keys = ("image", "label")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if dataset.num_classes is None:
            raise TaskError(f"the classifier needs a labelled dataset; {dataset.name} has no labels.")
        m = config.model
        check_positive_int("model.image_size", m.image_size)
        if m.image_size < 8:
            raise TaskError(f"model.image_size must be at least 8, not {m.image_size}.")
        check_positive_int("model.width", m.width)
        check_positive_int("model.feature_dim", m.feature_dim)
        check_range("model.dropout", m.dropout, 0.0, 1.0)
        self.model = classifier_lib.DigitsClassifier(num_classes=dataset.num_classes, width=m.width,
                                                     feature_dim=m.feature_dim, dropout=m.dropout,
                                                     dtype=precision.compute_dtype(config))

    def preprocess(self, images: jax.Array) -> jax.Array:
        """Integer images -> float [B, S, S, C] in [0, 1] at the config's image_size."""
        return self.resize(transforms.to_unit(images, self.dataset.num_levels))

    def resize(self, images: jax.Array) -> jax.Array:
        """Float images in [0, 1] at any resolution -> the classifier's [B, S, S, C]."""
        return transforms.resize(images, self.config.model.image_size)

    def init_params(self, rng):
        s = self.config.model.image_size
        x = jnp.zeros((1, s, s, self.dataset.arrays["image"].shape[-1]), jnp.float32)
        return self.model.init(rng, x)["params"]

    def loss_and_grads(self, params, inputs):
        """Cross-entropy gradient over `inputs` {"image", "label", "key": the examples' own keys
        [b, 2]}: (grads, {"loss", "accuracy"}, None), see accumulate.mean_gradients."""
        keys = inputs["key"]
        # Two independent streams per example: the shift and the dropout mask.
        shift_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
        dropout_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
        images = transforms.random_shift(inputs["image"], shift_keys, self.config.train.augment_shift)
        x = self.preprocess(images)

        def loss_fn(params):
            # Per-example dropout keys keep the step independent of the device split.
            def one(xi, k):
                return self.model.apply({"params": params}, xi[None], train=True, rngs={"dropout": k})[0]

            logits = jax.vmap(one)(x, dropout_keys)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, inputs["label"]).mean()
            return loss, logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        accuracy = jnp.mean(jnp.argmax(logits, -1) == inputs["label"])
        return grads, {"loss": loss, "accuracy": accuracy}, None

    def sample(self, params, rng, num):
        raise TaskError("the classifier is not a generative model; it has nothing to sample.")

    def logits_and_features(self, params, images: np.ndarray, batch_size: int = 512):
        """Float images [N, H, W, C] in [0, 1], any resolution -> (logits [N, classes], features
        [N, F]) as numpy."""
        def both(p, x):
            x = self.resize(x)
            return self.model.apply({"params": p}, x), self.model.apply({"params": p}, x, features=True)

        fn = jax.jit(both)
        outs = [jax.device_get(fn(params, images[i:i + batch_size])) for i in range(0, len(images), batch_size)]
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    def evaluate(self, state):
        test = self.eval_dataset()
        images = np.asarray(transforms.to_unit(test.arrays["image"], test.num_levels))
        logits, _ = self.logits_and_features(self.eval_params(state), images, self.config.eval.batch_size)
        labels = test.arrays["label"]
        loss = optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(logits), jnp.asarray(labels)).mean()
        return {"test_accuracy": float(np.mean(logits.argmax(-1) == labels)), "test_loss": float(loss),
                "num_test": int(len(labels))}
