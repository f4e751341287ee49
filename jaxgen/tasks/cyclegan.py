"""CycleGAN as a task: unpaired translation between the flat (`image`, domain X) and painted
(`painted`, domain Y) renderings of the `shapes` scenes.

Unpaired means training never sees which painted scene belongs to which flat one: `host_batch` draws
the two domains as independently shuffled streams (different permutation seeds), and by default
from disjoint halves of the train split (X from the first half of the scenes, Y from the second),
so no true pair is ever even present in training. Evaluation, on held-out test scenes, may use the
pairing: it scores G(x) against the true painted counterpart of x (and F(y) against y's flat one).

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

from jaxgen.data.pipeline import Dataset
from jaxgen.eval.images import make_grid
from jaxgen.models import cyclegan as cg
from jaxgen.tasks.base import Task, TaskError, check_channels
from jaxgen.train import accumulate, parallel, precision
from jaxgen.train import state as state_lib

DOMAINS = ("image", "painted")  # X, Y


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
    init_keys = 4  # G, F, D_X, D_Y
    ema_of = "generator"  # both generators {"G", "F"}
    fid_reference = DOMAINS[1]  # the translations G(x) against real painted scenes

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        m = config.model
        missing = [k for k in DOMAINS if k not in dataset.arrays]
        if missing:
            raise TaskError(f"cyclegan needs a dataset with both renderings {DOMAINS} (shapes); "
                            f"{dataset.name} lacks {missing[0]!r}.")
        check_channels("model.g_channels", m.g_channels)
        check_channels("model.d_channels", m.d_channels)
        if m.pool_size < 0 or m.cycle_weight < 0 or m.identity_weight < 0:
            raise TaskError("model.pool_size, model.cycle_weight and model.identity_weight must be >= 0.")
        size = dataset.arrays["image"].shape[1]
        scale = 2 ** (len(m.g_channels) - 1)
        if size % scale:
            raise TaskError(f"{size}x{size} images do not halve {len(m.g_channels) - 1} times; use fewer "
                            f"model.g_channels.")
        n = dataset.num_examples
        if config.data.get("disjoint_domains", True):
            self.domain_x, self.domain_y = _rows(dataset, DOMAINS[0], 0, n // 2), _rows(dataset, DOMAINS[1], n // 2, n)
        else:
            self.domain_x, self.domain_y = _rows(dataset, DOMAINS[0], 0, n), _rows(dataset, DOMAINS[1], 0, n)
        self.image_shape = tuple(dataset.arrays["image"].shape[1:])
        dtype = precision.compute_dtype(config)
        def make_g():
            return cg.ResnetGenerator(channels=tuple(m.g_channels), num_res_blocks=m.num_res_blocks,
                                      out_channels=self.image_shape[-1], edge_kernel=m.get("edge_kernel", 7),
                                      dtype=dtype)

        self.g_xy, self.f_yx = make_g(), make_g()
        self.d = cg.PatchDiscriminator(channels=tuple(m.d_channels), dtype=dtype)
        self.g_tx, self.d_tx = self.optimizer(), self.optimizer()

    # ---- data ------------------------------------------------------------------------------------
    def host_batch(self, step, process_index=0, process_count=1):
        """{"x": flat scenes, "y": painted scenes}, uint8 [B_local, H, W, 3] each, from two
        independently shuffled streams (seeds 2 * seed and 2 * seed + 1)."""
        t, s = self.config.train, self.config.seed
        x = self.domain_x.batch(2 * s, step, t.batch_size, process_index, process_count, keys=("image",))
        y = self.domain_y.batch(2 * s + 1, step, t.batch_size, process_index, process_count, keys=("image",))
        return {"x": x["image"], "y": y["image"]}

    @staticmethod
    def to_model(images: jax.Array) -> jax.Array:
        """uint8 [..., H, W, C] -> float in [-1, 1]."""
        return images.astype(jnp.float32) * (2.0 / 255.0) - 1.0

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
        x, y = self.to_model(batch["x"]), self.to_model(batch["y"])
        rng = state_lib.step_rng(state)
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

        g_grads, g_metrics, fakes = accumulate.mean_gradients(g_grads_fn, state.params["generator"],
                                                              {"x": x, "y": y}, self.grad_accum)
        g_grads = parallel.pmean(g_grads)
        updates, g_opt = self.g_tx.update(g_grads, state.opt_state["generator"], state.params["generator"])
        gen = optax.apply_updates(state.params["generator"], updates)

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

        d_grads, d_metrics, _ = accumulate.mean_gradients(d_grads_fn, disc, {"x": x, "y": y, **pooled},
                                                          self.grad_accum)
        d_grads = parallel.pmean(d_grads)
        updates, d_opt = self.d_tx.update(d_grads, state.opt_state["discriminator"], disc)
        disc = optax.apply_updates(disc, updates)

        params = {"generator": gen, "discriminator": disc}
        state = state.replace(step=state.step + 1, params=params, ema_params=self.ema_update(state, params),
                              opt_state={"generator": g_opt, "discriminator": d_opt}, pools=pools)
        metrics = {"loss": g_metrics["g_loss"] + d_metrics["d_loss"], **g_metrics, **d_metrics,
                   "g_grad_norm": optax.tree.norm(g_grads), "d_grad_norm": optax.tree.norm(d_grads)}
        return state, parallel.pmean(metrics)

    # ---- sampling and evaluation -------------------------------------------------------------------
    def _translate_all(self, params, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        """Held-out uint8 pairs x, y [N, H, W, C] -> G(x), F(y), F(G(x)), G(F(y)) as floats in [0, 1]."""
        def run(gen, xb, yb):
            fake_y, fake_x = self._translate(gen, self.to_model(xb), self.to_model(yb))
            rec_x, rec_y = self._translate(gen, fake_x, fake_y)[::-1]

            def unit(a):
                return jnp.clip((a + 1.0) / 2.0, 0.0, 1.0)

            return {"x_to_y": unit(fake_y), "y_to_x": unit(fake_x), "cycle_x": unit(rec_x), "cycle_y": unit(rec_y)}

        fn, bs = jax.jit(run), self.config.eval.batch_size
        outs = [jax.device_get(fn(params["generator"], x[i:i + bs], y[i:i + bs])) for i in range(0, len(x), bs)]
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    def sample(self, params, rng, num):
        """Translations X -> Y of `num` held-out flat scenes (chosen by rng): {"images": G(x) [num, H,
        W, C] in [0, 1], "inputs": x in [0, 1]}."""
        test = self.eval_dataset()
        n = test.num_examples
        idx = np.asarray(jax.random.permutation(rng, n))[np.arange(num) % n]
        x, y = test.arrays[DOMAINS[0]][idx], test.arrays[DOMAINS[1]][idx]
        out = self._translate_all(params, x, y)
        return {"images": out["x_to_y"], "inputs": x.astype(np.float32) / 255.0}

    def evaluate(self, state):
        """Mean absolute pixel error (images in [0, 1]) on the held-out test scenes: translated vs the
        true counterpart (x_to_y_l1 = |G(x) - y|, y_to_x_l1 = |F(y) - x|), next to the untranslated
        input's error (x_untranslated_l1 = |x - y|, ...) and that of the target domain's mean
        training image (x_to_y_mean_image_l1), and the cycle reconstruction errors."""
        test = self.eval_dataset()
        n = min(self.config.eval.num_examples, test.num_examples)
        x, y = test.arrays[DOMAINS[0]][:n], test.arrays[DOMAINS[1]][:n]
        out = self._translate_all(self.eval_params(state), x, y)
        xf, yf = x.astype(np.float32) / 255.0, y.astype(np.float32) / 255.0

        def mae(a, b):
            return float(np.mean(np.abs(a - b)))

        r = {"x_to_y_l1": mae(out["x_to_y"], yf), "x_untranslated_l1": mae(xf, yf),
             "y_to_x_l1": mae(out["y_to_x"], xf), "y_untranslated_l1": mae(yf, xf),
             "cycle_x_l1": mae(out["cycle_x"], xf), "cycle_y_l1": mae(out["cycle_y"], yf), "num_test": n}
        # A stronger baseline than the untranslated input: the mean image of the target domain's
        # training scenes (what a translator that ignores its input would best output under L1
        # is the per-pixel median; the mean is close and simple).
        mean_y = self.domain_y.arrays["image"].astype(np.float32).mean(0) / 255.0
        mean_x = self.domain_x.arrays["image"].astype(np.float32).mean(0) / 255.0
        r["x_to_y_mean_image_l1"], r["y_to_x_mean_image_l1"] = mae(mean_y[None], yf), mae(mean_x[None], xf)
        r["x_to_y_error_ratio"] = r["x_to_y_l1"] / r["x_untranslated_l1"]
        r["y_to_x_error_ratio"] = r["y_to_x_l1"] / r["y_untranslated_l1"]
        return r

    def figures(self, state):
        """Per direction, 8 held-out scenes as columns; rows: input / translated / true counterpart /
        cycle reconstruction."""
        test = self.eval_dataset()
        x, y = test.arrays[DOMAINS[0]][:8], test.arrays[DOMAINS[1]][:8]
        out = self._translate_all(self.eval_params(state), x, y)
        xf, yf = x.astype(np.float32) / 255.0, y.astype(np.float32) / 255.0
        rows = {"flat_to_painted": [xf, out["x_to_y"], yf, out["cycle_x"]],
                "painted_to_flat": [yf, out["y_to_x"], xf, out["cycle_y"]]}
        return {name: make_grid(np.concatenate(r), columns=8) for name, r in rows.items()}
