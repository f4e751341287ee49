"""CycleGAN as a task: unpaired translation between two image domains X and Y, from one of two
kinds of dataset:
  * two features of one split: the flat (`image`, X) and painted (`painted`, Y) renderings of the
    `shapes` scenes, whose test split pairs them (cyclegan_shapes);
  * two splits of one dataset, each an `image` feature: data.split (X) and data.split_y (Y) for
    training, data.eval_split and data.eval_split_y held out, never paired: a TFDS `cycle_gan/*`
    dataset, trainA / trainB / testA / testB (cyclegan_horse2zebra). Its images, of any size, are
    resized to data.load_size on the host as they are read (bicubic), and each training image is cut
    to a random data.crop_size square (and mirrored when data.random_flip) on the device, from its
    own key: the paper's resize-286 / random-crop-256 / flip. Held-out images are resized to
    data.crop_size whole.

Unpaired means training never sees which painted scene belongs to which flat one: `host_batch` draws
the two domains as independently shuffled streams (different permutation seeds), and by default
from disjoint halves of the train split (X from the first half of the scenes, Y from the second),
so no true pair is ever even present in training. Evaluation, on held-out test scenes, may use the
pairing: it scores G(x) against the true painted counterpart of x (and F(y) against y's flat one).
A dataset of two splits has no pairs to score against: evaluation reports the cycle and identity
errors and how far G and F move their inputs; `jaxgen eval` adds the FID of G(testA) to testB.

One step (Zhu et al. 2017, Sec. 4 and their reference implementation): one update of both
generators on the full objective (Eq. 3 + identity), then one update of both discriminators on real
images and on generated images drawn through the history pools (50 images each in the paper).
With train.grad_accum = m, each of the two updates accumulates its gradient over m micro-batches
(accumulate.mean_gradients; every loss is a per-pixel mean, so this equals the whole batch); the
generated images of all micro-batches are put back in batch order before the pools see them.

State: `CycleGANState`, the generic TrainState plus `pools` (two fixed-size image buffers kept as
arrays, so they are checkpointed and restored with the rest). params / opt_state =
{"generator": {"G", "F"}, "discriminator": {"D_X", "D_Y"}}, one Adam per player.
Data parallelism: everything is per example except the pools, which must stay identical on every
device; each device gathers the global batch of generated images (all_gather), runs the same pool
update with the step's key, and keeps its own rows of the result - the same as one device.
"""
from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgen.data import transforms
from jaxgen.data.pipeline import Dataset, load
from jaxgen.eval.images import make_grid
from jaxgen.models import cyclegan as cg
from jaxgen.tasks.base import Task, TaskError, check_channels, check_choice, check_positive_int
from jaxgen.train import parallel, precision
from jaxgen.train import state as state_lib

DOMAINS = ("image", "painted")  # X, Y: the features of a dataset of both renderings (shapes)
AUGMENT_STREAM = 0xA6  # folded into the step's key for the crops and flips (apart from the pools' draws)


@flax.struct.dataclass
class CycleGANState(state_lib.TrainState):
    """TrainState + pools: {"fake_x": pool, "fake_y": pool} (see models.cyclegan.pool_query)."""

    pools: dict | None = None


def _rows(dataset: Dataset, key: str, start: int, stop: int) -> Dataset:
    """One domain of a split: the feature `key` of examples [start, stop), as its own Dataset."""
    arrays = {"image": dataset.arrays[key][start:stop]}
    return Dataset(name=f"{dataset.name}:{key}", split=dataset.split, arrays=arrays, num_examples=stop - start,
                   num_levels=dataset.num_levels, num_classes=None)


class CycleGANTask(Task):
    supports_lora = False  # two optimizers, its own step
    supports_random_flip = True  # each domain's training images, independently (no pairs to keep)
    init_keys = 4  # G, F, D_X, D_Y
    ema_of = "generator"  # both generators {"G", "F"}
    fid_reference = DOMAINS[1]  # the translations G(x) against real painted scenes

    def __init__(self, config, dataset):
        d, m = config.data, config.model
        #: X and Y are two splits (data.split, data.split_y) rather than two features of one split
        self.two_splits = bool(d.get("split_y"))
        if self.two_splits:
            dataset = self._two_splits(config)
            self.fid_reference = "image"  # of data.eval_split_y (fid_reference_dataset)
        elif d.get("load_size") or d.get("crop_size"):
            raise TaskError("data.load_size and data.crop_size resize and crop a dataset of two splits "
                            "(data.split_y); set them to 0 for one of two renderings.")
        super().__init__(config, dataset)
        if not self.two_splits:
            missing = [k for k in DOMAINS if k not in dataset.arrays]
            if missing:
                raise TaskError(f"cyclegan needs a dataset with both renderings {DOMAINS} (shapes), or two "
                                f"splits (data.split_y); {dataset.name} lacks {missing[0]!r}.")
        check_channels("model.g_channels", m.g_channels)
        check_channels("model.d_channels", m.d_channels)
        check_choice("model.upsample", m.get("upsample", "nearest"), ("nearest", "transpose"))
        if m.pool_size < 0 or m.cycle_weight < 0 or m.identity_weight < 0:
            raise TaskError("model.pool_size, model.cycle_weight and model.identity_weight must be >= 0.")
        size = d.crop_size if self.two_splits else dataset.arrays["image"].shape[1]
        scale = 2 ** (len(m.g_channels) - 1)
        if size % scale:
            raise TaskError(f"{size}x{size} images do not halve {len(m.g_channels) - 1} times; use fewer "
                            f"model.g_channels.")
        n = dataset.num_examples
        if self.two_splits:
            self.image_shape = (size, size, dataset.arrays["image"].shape[-1])
        else:
            if d.get("disjoint_domains", True):
                self.domain_x, self.domain_y = (_rows(dataset, DOMAINS[0], 0, n // 2),
                                                _rows(dataset, DOMAINS[1], n // 2, n))
            else:
                self.domain_x, self.domain_y = _rows(dataset, DOMAINS[0], 0, n), _rows(dataset, DOMAINS[1], 0, n)
            self.image_shape = tuple(dataset.arrays["image"].shape[1:])
        dtype = precision.compute_dtype(config)
        def make_g():
            return cg.ResnetGenerator(channels=tuple(m.g_channels), num_res_blocks=m.num_res_blocks,
                                      out_channels=self.image_shape[-1], edge_kernel=m.get("edge_kernel", 7),
                                      upsample=m.get("upsample", "nearest"), dtype=dtype)

        self.g_xy, self.f_yx = make_g(), make_g()
        self.d = cg.PatchDiscriminator(channels=tuple(m.d_channels), dtype=dtype)
        self.g_tx, self.d_tx = self.optimizer(), self.optimizer()

    # ---- data ------------------------------------------------------------------------------------
    def _two_splits(self, config) -> Dataset:
        """Sets domain_x, domain_y to the training splits data.split and data.split_y, their images
        resized to data.load_size as they are read (any stored size), and returns domain_x."""
        d = config.data
        for field in ("load_size", "crop_size"):
            check_positive_int(f"data.{field}", d.get(field))
        if d.crop_size > d.load_size:
            raise TaskError(f"data.crop_size={d.crop_size} is larger than data.load_size={d.load_size}, the "
                            f"size the images are resized to before the crop.")
        if not d.get("eval_split_y"):
            raise TaskError("a dataset of two splits (data.split_y) needs data.eval_split_y, the held-out "
                            "split of domain Y (e.g. testB), beside data.eval_split.")
        self.domain_x = load(d.name, d.split, d.get("data_dir"), image_size=d.load_size)
        self.domain_y = load(d.name, d.split_y, d.get("data_dir"), image_size=d.load_size)
        return self.domain_x

    def eval_dataset(self) -> Dataset:
        """The held-out split of X (data.eval_split); of two splits, resized to data.crop_size."""
        if not self.two_splits:
            return super().eval_dataset()
        d = self.config.data
        return load(d.name, d.eval_split, d.get("data_dir"), image_size=d.crop_size)

    def fid_reference_dataset(self) -> Dataset:
        """Where the real images of domain Y are held out, the reference of G(x)'s FID: the eval split
        (its `painted` feature) for one of two renderings, else data.eval_split_y at data.crop_size."""
        if not self.two_splits:
            return super().fid_reference_dataset()
        d = self.config.data
        return load(d.name, d.eval_split_y, d.get("data_dir"), image_size=d.crop_size)

    def _held_out(self, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The first n (default all) held-out images of each domain, uint8 x [N, H, W, C], y [M, ...]:
        of one split of both renderings the pairs (x[i], y[i]), N = M; of two splits unpaired."""
        if self.two_splits:
            x, y = self.eval_dataset().arrays["image"], self.fid_reference_dataset().arrays["image"]
        else:
            test = self.eval_dataset()
            x, y = test.arrays[DOMAINS[0]], test.arrays[DOMAINS[1]]
        return np.asarray(x[:n]), np.asarray(y[:n])

    def host_batch(self, step, process_index=0, process_count=1):
        """{"x": images of X, "y": images of Y}, uint8 [B_local, H, W, C] each (H = W = data.load_size
        for two splits), from two independently shuffled streams (seeds 2 * seed and 2 * seed + 1)."""
        t, s = self.config.train, self.config.seed
        x = self.domain_x.batch(2 * s, step, t.batch_size, process_index, process_count, keys=("image",))
        y = self.domain_y.batch(2 * s + 1, step, t.batch_size, process_index, process_count, keys=("image",))
        return {"x": x["image"], "y": y["image"]}

    @staticmethod
    def to_model(images: jax.Array) -> jax.Array:
        """uint8 [..., H, W, C] -> float in [-1, 1]."""
        return images.astype(jnp.float32) * (2.0 / 255.0) - 1.0

    def augment(self, images: jax.Array, rng: jax.Array) -> jax.Array:
        """A domain's training images uint8 [B, h, w, C] -> [B, H, W, C] (self.image_shape): each cut to
        a random data.crop_size square (two splits) and mirrored with probability 1/2 (data.random_flip),
        from its own key (parallel.example_keys of `rng`: the same on any device split). The images
        themselves when neither applies (shapes)."""
        crop, flip = self.two_splits, self.config.data.get("random_flip", False)
        if not (crop or flip):
            return images
        keys = parallel.example_keys(rng, images.shape[0])
        if crop:
            size = self.image_shape[0]
            images = transforms.random_window(images, jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys), size, size)
        if flip:
            images = transforms.random_flip(images, jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys))
        return images

    # ---- state -----------------------------------------------------------------------------------
    def init_params(self, g_key, f_key, dx_key, dy_key):
        x = jnp.zeros((1,) + self.image_shape)
        return {"generator": {"G": self.g_xy.init(g_key, x)["params"], "F": self.f_yx.init(f_key, x)["params"]},
                "discriminator": {"D_X": self.d.init(dx_key, x)["params"], "D_Y": self.d.init(dy_key, x)["params"]}}

    def new_state(self, params, rng):
        """Step 0: one optimizer state per player, empty pools, the generators' EMA when kept."""
        opt_state = {"generator": self.g_tx.init(params["generator"]),
                     "discriminator": self.d_tx.init(params["discriminator"])}
        size = self.config.model.pool_size
        pools = {"fake_x": cg.pool_init(size, self.image_shape), "fake_y": cg.pool_init(size, self.image_shape)}
        return CycleGANState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, rng=rng,
                             ema_params=self.ema_copy(params), pools=pools)

    def _translate(self, gen, x=None, y=None):
        """G(x) and/or F(y) with generator params {"G", "F"}."""
        fake_y = self.g_xy.apply({"params": gen["G"]}, x) if x is not None else None
        fake_x = self.f_yx.apply({"params": gen["F"]}, y) if y is not None else None
        return fake_y, fake_x

    # ---- the step --------------------------------------------------------------------------------
    def train_step(self, state, batch):
        m = self.config.model
        rng = state_lib.step_rng(state)
        augment_rng = jax.random.fold_in(rng, AUGMENT_STREAM)
        x = self.to_model(self.augment(batch["x"], jax.random.fold_in(augment_rng, 0)))
        y = self.to_model(self.augment(batch["y"], jax.random.fold_in(augment_rng, 1)))
        disc = state.params["discriminator"]

        def d_apply(p, im):
            return self.d.apply({"params": p}, im)

        # Generators: Eq. 3 (least-squares GAN terms) + lambda * cycle + lambda_id * identity.
        def g_grads_fn(generators, inputs):
            """(grads, metrics, {"fake_x": F(y), "fake_y": G(x)}) on real images inputs["x"], ["y"]."""
            x, y = inputs["x"], inputs["y"]

            def g_loss_fn(gen):
                fake_y, fake_x = self._translate(gen, x, y)
                rec_x, rec_y = self._translate(gen, fake_x, fake_y)[::-1]  # F(G(x)), G(F(y))
                adv = cg.lsgan_generator_loss(d_apply(disc["D_Y"], fake_y)) + cg.lsgan_generator_loss(
                    d_apply(disc["D_X"], fake_x))
                cyc = cg.cycle_loss(x, rec_x) + cg.cycle_loss(y, rec_y)
                idt = jnp.zeros(())
                if m.identity_weight:
                    same_y, same_x = self._translate(gen, y, x)  # G(y), F(x)
                    idt = cg.identity_loss(y, same_y) + cg.identity_loss(x, same_x)
                total = adv + m.cycle_weight * cyc + m.identity_weight * idt
                return total, ({"g_loss": total, "g_adv": adv, "cycle": cyc, "identity": idt},
                               {"fake_x": fake_x, "fake_y": fake_y})

            (_, (metrics, fakes)), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(generators)
            return grads, metrics, fakes

        gen, g_opt, g_grads, g_metrics, fakes = self.update_player(
            g_grads_fn, state.params["generator"], state.opt_state["generator"], self.g_tx, {"x": x, "y": y})

        # History pools over the *global* batch of generated images (identical on every device).
        b = x.shape[0]
        first = jax.lax.axis_index(parallel.AXIS) * b
        pools, pooled = {}, {}
        for i, name in enumerate(("fake_x", "fake_y")):
            everyone = jax.lax.all_gather(jax.lax.stop_gradient(fakes[name]), parallel.AXIS, tiled=True)
            pools[name], out = cg.pool_query(state.pools[name], everyone, jax.random.fold_in(rng, i))
            pooled[name] = jax.lax.dynamic_slice_in_dim(out, first, b)

        # Discriminators: least squares on real images and pooled fakes (halved, Zhu et al. Sec. 4).
        def d_grads_fn(discriminators, inputs):
            def d_loss_fn(dp):
                real_x, real_y = d_apply(dp["D_X"], inputs["x"]), d_apply(dp["D_Y"], inputs["y"])
                fake_x, fake_y = d_apply(dp["D_X"], inputs["fake_x"]), d_apply(dp["D_Y"], inputs["fake_y"])
                loss = cg.lsgan_discriminator_loss(real_x, fake_x) + cg.lsgan_discriminator_loss(real_y, fake_y)
                return loss, {"d_loss": loss, "d_real": 0.5 * (jnp.mean(real_x) + jnp.mean(real_y)),
                              "d_fake": 0.5 * (jnp.mean(fake_x) + jnp.mean(fake_y))}

            (_, metrics), grads = jax.value_and_grad(d_loss_fn, has_aux=True)(discriminators)
            return grads, metrics, None

        disc, d_opt, d_grads, d_metrics, _ = self.update_player(
            d_grads_fn, disc, state.opt_state["discriminator"], self.d_tx, {"x": x, "y": y, **pooled})

        params = {"generator": gen, "discriminator": disc}
        state = state.replace(step=state.step + 1, params=params, ema_params=self.ema_update(state, params),
                              opt_state={"generator": g_opt, "discriminator": d_opt}, pools=pools)
        metrics = {"loss": g_metrics["g_loss"] + d_metrics["d_loss"], **g_metrics, **d_metrics,
                   "g_grad_norm": optax.tree.norm(g_grads), "d_grad_norm": optax.tree.norm(d_grads)}
        return state, parallel.pmean(metrics)

    # ---- sampling and evaluation -------------------------------------------------------------------
    def _translate_all(self, params, x: np.ndarray, y: np.ndarray, identity: bool = False) -> dict[str, np.ndarray]:
        """Held-out uint8 images x [N, H, W, C] of X and y [M, H, W, C] of Y (pairs or not) -> floats
        in [0, 1]: G(x) and F(G(x)) [N, ...] ("x_to_y", "cycle_x"), F(y) and G(F(y)) [M, ...]
        ("y_to_x", "cycle_y"); with `identity` also F(x) [N, ...] and G(y) [M, ...] ("identity_x",
        "identity_y": each generator on an image already in its target domain)."""
        def unit(a):
            return jnp.clip((a + 1.0) / 2.0, 0.0, 1.0)

        def from_x(gen, xb):
            real = self.to_model(xb)
            fake_y = self._translate(gen, x=real)[0]
            out = {"x_to_y": fake_y, "cycle_x": self._translate(gen, y=fake_y)[1]}
            if identity:
                out["identity_x"] = self._translate(gen, y=real)[1]
            return jax.tree.map(unit, out)

        def from_y(gen, yb):
            real = self.to_model(yb)
            fake_x = self._translate(gen, y=real)[1]
            out = {"y_to_x": fake_x, "cycle_y": self._translate(gen, x=fake_x)[0]}
            if identity:
                out["identity_y"] = self._translate(gen, x=real)[0]
            return jax.tree.map(unit, out)

        bs, gen = self.config.eval.batch_size, params["generator"]
        out = {}
        for fn, images in ((jax.jit(from_x), x), (jax.jit(from_y), y)):
            if not len(images):  # sample() translates X alone
                continue
            parts = [jax.device_get(fn(gen, images[i:i + bs])) for i in range(0, len(images), bs)]
            out.update({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
        return out

    def sample(self, params, rng, num):
        """Translations X -> Y of `num` held-out images of X (chosen by rng; repeated when num exceeds
        them): {"images": G(x) [num, H, W, C] in [0, 1], "inputs": x in [0, 1]}."""
        test = self.eval_dataset()
        n = test.num_examples
        idx = np.asarray(jax.random.permutation(rng, n))[np.arange(num) % n]
        x = np.asarray(test.arrays[DOMAINS[0]][idx])
        out = self._translate_all(params, x, x[:0])
        return {"images": out["x_to_y"], "inputs": x.astype(np.float32) / 255.0}

    def evaluate(self, state):
        """On eval.num_examples held-out images of each domain (images in [0, 1]), mean absolute
        pixel errors; see _evaluate_pairs (one split of both renderings) or _evaluate_unpaired (two
        splits)."""
        x, y = self._held_out(self.config.eval.num_examples)
        if self.two_splits:
            return self._evaluate_unpaired(self.eval_params(state), x, y)
        return self._evaluate_pairs(self.eval_params(state), x, y)

    def _evaluate_pairs(self, params, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Held-out pairs (x[i], y[i]): translated vs the true counterpart (x_to_y_l1 = |G(x) - y|,
        y_to_x_l1 = |F(y) - x|), next to the untranslated input's error (x_untranslated_l1 = |x - y|,
        ...) and that of the target domain's mean training image (x_to_y_mean_image_l1), and the
        cycle reconstruction errors."""
        n = len(x)
        out = self._translate_all(params, x, y)
        xf, yf = x.astype(np.float32) / 255.0, y.astype(np.float32) / 255.0
        r = {"x_to_y_l1": _mae(out["x_to_y"], yf), "x_untranslated_l1": _mae(xf, yf),
             "y_to_x_l1": _mae(out["y_to_x"], xf), "y_untranslated_l1": _mae(yf, xf),
             "cycle_x_l1": _mae(out["cycle_x"], xf), "cycle_y_l1": _mae(out["cycle_y"], yf), "num_test": n}
        # A stronger baseline than the untranslated input: the mean image of the target domain's
        # training scenes (what a translator that ignores its input would best output under L1
        # is the per-pixel median; the mean is close and simple).
        mean_y = self.domain_y.arrays["image"].astype(np.float32).mean(0) / 255.0
        mean_x = self.domain_x.arrays["image"].astype(np.float32).mean(0) / 255.0
        r["x_to_y_mean_image_l1"], r["y_to_x_mean_image_l1"] = _mae(mean_y[None], yf), _mae(mean_x[None], xf)
        r["x_to_y_error_ratio"] = r["x_to_y_l1"] / r["x_untranslated_l1"]
        r["y_to_x_error_ratio"] = r["y_to_x_l1"] / r["y_untranslated_l1"]
        return r

    def _evaluate_unpaired(self, params, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Held-out images of X and Y that are not pairs (horse2zebra's testA, testB): nothing to
        score a translation against, so the terms of the objective and how far each generator moves
        its input: cycle_x_l1 = |F(G(x)) - x|, cycle_y_l1 = |G(F(y)) - y|; identity_y_l1 = |G(y) - y|,
        identity_x_l1 = |F(x) - x| (a generator should leave its own target domain alone); x_to_y_change_l1
        = |G(x) - x|, y_to_x_change_l1 = |F(y) - y| (0 for a generator that copies its input). Whether
        G(x) looks like Y is `jaxgen eval`'s FID of G(x) against the held-out Y (data.eval_split_y)."""
        out = self._translate_all(params, x, y, identity=True)
        xf, yf = x.astype(np.float32) / 255.0, y.astype(np.float32) / 255.0
        return {"cycle_x_l1": _mae(out["cycle_x"], xf), "cycle_y_l1": _mae(out["cycle_y"], yf),
                "identity_x_l1": _mae(out["identity_x"], xf), "identity_y_l1": _mae(out["identity_y"], yf),
                "x_to_y_change_l1": _mae(out["x_to_y"], xf), "y_to_x_change_l1": _mae(out["y_to_x"], yf),
                "num_test_x": len(x), "num_test_y": len(y)}

    def figures(self, state):
        """Per direction, up to 8 held-out images as columns; rows: input / translated / true
        counterpart (pairs only) / cycle reconstruction."""
        x, y = self._held_out(8)
        out = self._translate_all(self.eval_params(state), x, y)
        xf, yf = x.astype(np.float32) / 255.0, y.astype(np.float32) / 255.0
        if self.two_splits:
            rows = {"x_to_y": [xf, out["x_to_y"], out["cycle_x"]], "y_to_x": [yf, out["y_to_x"], out["cycle_y"]]}
        else:
            rows = {"flat_to_painted": [xf, out["x_to_y"], yf, out["cycle_x"]],
                    "painted_to_flat": [yf, out["y_to_x"], xf, out["cycle_y"]]}
        return {name: make_grid(np.concatenate(r), columns=len(r[0])) for name, r in rows.items()}


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two image arrays (broadcasting)."""
    return float(np.mean(np.abs(a - b)))
