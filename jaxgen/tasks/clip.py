"""CLIP-style contrastive text-image training as a task (see jaxgen.models.clip).

Captions. On `shapes` each training example gets one of its scene's captions (the styles in
`data.caption_styles`: full, count, colour, position); on `digits` (a labelled dataset with no
text) one of `captions.DIGIT_TEMPLATES` filled with its digit; on any other labelled dataset with
data.captions = 'class_names' (CIFAR-10, CIFAR-100) one of `CLASS_TEMPLATES` filled with its class
name, the names read from the TFDS dataset info (features["label"].names, underscores as spaces). Which one is a pure function of
(seed, step, global row), so resumed runs replay. Captions are tokenized on the host: the batch
holds "image" uint8 and "tokens" int32 [B, context_length]. The vocabulary is built from every
caption the training data can produce and saved as <workdir>/tokenizer.json.

The step all-gathers the embeddings over the `data` axis: the loss of every step is the loss of
the global batch, on any number of devices (tests/tasks/test_clip_task.py checks 8 vs 1).

Evaluation: on a labelled dataset, zero-shot accuracy from the prompt templates (ensembled: the
mean of each class's normalised template embeddings) next to a linear probe on the image
embeddings (class names: zero-shot accuracy with the single prompt "a photo of a {class}." and
with the templates ensembled, top-1, on the whole test split); on `shapes`, text->image and image->text Recall@1/5/10 on the held-out test scenes for
each caption style, and the mean CLIP score of matching and of mismatched pairs.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from jaxgen.data import captions, transforms
from jaxgen.data import shapes as shapes_lib
from jaxgen.eval import contrastive
from jaxgen.models import clip as clip_lib
from jaxgen.nn.text import Tokenizer
from jaxgen.tasks.base import Task, TaskError, check_channels, check_choice, check_positive_int
from jaxgen.train import parallel, precision

TOKENIZER_FILE = "tokenizer.json"
# Prompts for a class name (a few of the CIFAR prompts of CLIP's zero-shot notebook): training
# captions draw one per example; zero-shot evaluation uses the first alone and all of them ensembled.
CLASS_TEMPLATES = ("a photo of a {}.", "a blurry photo of a {}.", "a photo of the small {}.",
                   "a photo of the big {}.", "a low resolution photo of a {}.", "a good photo of a {}.")
CAPTION_SOURCES = ("templates", "class_names")


def class_names(config, dataset) -> list[str]:
    """The names of `dataset`'s classes, read from its TFDS info (features["label"].names, as
    prepared; under tfds.testing.mock_data whatever the mock holds), underscores as spaces."""
    root = config.data.get("data_dir") or os.environ.get("JAXGEN_DATA_DIR") or None
    try:
        label = tfds.builder(dataset.name, data_dir=root).info.features["label"]
        names = list(label.names)
    except Exception as e:  # noqa: BLE001 - any failure means: no names to read
        raise TaskError(f"cannot read the class names of {dataset.name} from its TFDS info ({e}).") from None
    if len(names) != dataset.num_classes or len(set(names)) != len(names):
        raise TaskError(f"{dataset.name}'s TFDS info names {len(names)} distinct classes of {dataset.num_classes}; "
                        f"class-name captions need one name per class.")
    return [str(n).replace("_", " ") for n in names]


class CLIPTask(Task):
    batch_keys = ("image", "tokens")
    supports_lora = False  # its loss all-gathers the embeddings across devices: not tried with adapters

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        m = config.model
        self.styles = tuple(config.data.get("caption_styles", ()))
        source = config.data.get("captions", "templates")
        check_choice("data.captions", source, CAPTION_SOURCES)
        if source == "class_names":
            if not dataset.num_classes:
                raise TaskError(f"data.captions='class_names' needs a labelled dataset; {dataset.name} has no "
                                f"'label' feature with classes.")
            self.text_source = "class_names"
            self.class_names = class_names(config, dataset)
        elif "caption" in dataset.arrays:
            bad = [s for s in self.styles if s not in shapes_lib.CAPTION_STYLES]
            if not self.styles or bad:
                raise TaskError(f"data.caption_styles must be a non-empty list of {shapes_lib.CAPTION_STYLES}, "
                                f"not {list(self.styles)}.")
            self.text_source = "captions"
        elif dataset.num_classes == 10 and dataset.name == "digits":
            self.text_source = "digit_templates"
        else:
            raise TaskError(f"CLIP needs captioned images (shapes), digits with templated captions, or a labelled "
                            f"dataset with data.captions='class_names'; {dataset.name} has none of these.")
        check_choice("model.loss", m.loss, clip_lib.LOSSES)
        check_choice("model.image_tower", m.image_tower, clip_lib.IMAGE_TOWERS)
        for key in ("image_size", "embed_dim", "context_length", "image_width", "text_width", "text_depth"):
            if key in m:
                check_positive_int(f"model.{key}", m[key])
        check_channels("model.image_channels", m.image_channels)
        if self.grad_accum > 1:
            raise TaskError("CLIP cannot accumulate gradients (train.grad_accum > 1): its loss couples every "
                            "pair of the batch, so micro-batches would be smaller contrastive batches, not the "
                            "same step; use more devices or a smaller train.batch_size instead.")
        if m.image_tower == "vit" and m.image_size % m.patch_size:
            raise TaskError(f"model.image_size {m.image_size} is not a multiple of model.patch_size {m.patch_size}.")
        self.tokenizer = Tokenizer.build(self.vocabulary_texts(), m.context_length)
        self.model = clip_lib.CLIP(
            vocab_size=self.tokenizer.vocab_size, context_length=m.context_length, embed_dim=m.embed_dim,
            image_tower=m.image_tower, image_channels=tuple(m.image_channels), image_width=m.image_width,
            patch_size=m.patch_size, vit_depth=m.vit_depth, text_width=m.text_width, text_depth=m.text_depth,
            num_heads=m.num_heads, loss=m.loss, dtype=precision.compute_dtype(config))
        self._encoders = {}

    # ---- text -------------------------------------------------------------------------------------
    def vocabulary_texts(self) -> list[str]:
        """Every caption the training data can produce: the vocabulary is built from these."""
        if self.text_source == "digit_templates":
            return captions.all_digit_captions()
        if self.text_source == "class_names":
            return [t.format(name) for name in self.class_names for t in CLASS_TEMPLATES]
        return [str(t) for s in self.styles for t in self.dataset.arrays[shapes_lib.CAPTION_KEYS[s]]]

    def save_assets(self, workdir):
        self.tokenizer.save(os.path.join(workdir, TOKENIZER_FILE))

    def load_assets(self, workdir):
        path = os.path.join(workdir, TOKENIZER_FILE)
        if not os.path.isfile(path):
            raise TaskError(f"{workdir} has no {TOKENIZER_FILE}: the run's vocabulary is lost, so its text "
                            f"embeddings cannot be used.")
        saved = Tokenizer.load(path)
        if saved.vocab_size != self.tokenizer.vocab_size or saved.context_length != self.tokenizer.context_length:
            raise TaskError(f"{path} holds {saved.vocab_size} words at context {saved.context_length}, but the "
                            f"model was built for {self.tokenizer.vocab_size} at {self.tokenizer.context_length}.")
        self.tokenizer = saved

    def host_batch(self, step, process_index=0, process_count=1):
        t = self.config.train
        if self.text_source == "digit_templates":
            rows = self.dataset.batch(self.config.seed, step, t.batch_size, process_index, process_count,
                                      keys=("image", "label"))
            which = captions.caption_rows(self.config.seed, step, t.batch_size, len(captions.DIGIT_TEMPLATES),
                                          process_index, process_count)
            texts = [captions.digit_caption(int(y), captions.DIGIT_TEMPLATES[k]) for y, k in zip(rows["label"], which)]
        elif self.text_source == "class_names":
            rows = self.dataset.batch(self.config.seed, step, t.batch_size, process_index, process_count,
                                      keys=("image", "label"))
            which = captions.caption_rows(self.config.seed, step, t.batch_size, len(CLASS_TEMPLATES),
                                          process_index, process_count)
            texts = [CLASS_TEMPLATES[k].format(self.class_names[int(y)]) for y, k in zip(rows["label"], which)]
        else:
            keys = [shapes_lib.CAPTION_KEYS[s] for s in self.styles]
            rows = self.dataset.batch(self.config.seed, step, t.batch_size, process_index, process_count,
                                      keys=("image", *keys))
            texts = [str(x) for x in captions.drawn_captions(rows, keys, self.config.seed, step, t.batch_size,
                                                              process_index, process_count)]
        return {"image": rows["image"], "tokens": self.tokenizer.encode(texts)}

    # ---- model ------------------------------------------------------------------------------------
    def preprocess(self, images: jax.Array) -> jax.Array:
        """Images [B, H, W, C], integer in the dataset's levels or float in [0, 1], any resolution ->
        float [B, S, S, C] in [-1, 1] at model.image_size."""
        channels = self.dataset.arrays["image"].shape[-1]
        if images.ndim != 4 or images.shape[-1] != channels:
            raise TaskError(f"this CLIP model takes images [N, H, W, {channels}], not {tuple(images.shape)}.")
        if jnp.issubdtype(images.dtype, jnp.integer):
            images = transforms.to_unit(images, self.dataset.num_levels)
        x = transforms.resize(images.astype(jnp.float32), self.config.model.image_size)
        return 2.0 * x - 1.0

    def init_params(self, rng):
        s, c = self.config.model.image_size, self.dataset.arrays["image"].shape[-1]
        images = jnp.zeros((1, s, s, c), jnp.float32)
        return self.model.init(rng, images, jnp.asarray(self.tokenizer.encode("a")))["params"]

    def loss_and_grads(self, params, inputs):
        """The gradient of the contrastive loss of the *global* batch (this device's pairs
        {"image", "tokens"} against every device's: the embeddings are all-gathered), with each
        image shifted by train.augment_shift pixels on its own key: (grads, {"loss", ...}, None)."""
        images = inputs["image"]
        shift = self.config.train.get("augment_shift", 0)
        if shift:
            images = transforms.random_shift(images, inputs["key"], shift)
        x = self.preprocess(images)

        def loss_fn(params):
            img, txt, scale, bias = self.model.apply({"params": params}, x, inputs["tokens"])
            loss, metrics = clip_lib.contrastive_loss(img, txt, scale, bias, self.config.model.loss,
                                                      axis_name=parallel.AXIS)
            return loss, {**metrics, "logit_scale": scale}

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return grads, {"loss": loss, **metrics}, None

    def sample(self, params, rng, num):
        raise TaskError("CLIP is not a generative model; use `jaxgen embed` or `jaxgen zeroshot`.")

    # ---- embeddings -------------------------------------------------------------------------------
    def _encoder(self, name):
        if name not in self._encoders:
            method = getattr(clip_lib.CLIP, name)
            self._encoders[name] = jax.jit(lambda p, x: self.model.apply({"params": p}, x, method=method))
        return self._encoders[name]

    def embed_images(self, params, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Images [N, H, W, C] (see `preprocess`) -> normalised embeddings [N, E]."""
        fn = self._encoder("encode_image")
        return np.concatenate([np.asarray(fn(params, self.preprocess(jnp.asarray(images[i:i + batch_size]))))
                               for i in range(0, len(images), batch_size)])

    def embed_texts(self, params, texts: list[str], batch_size: int = 500) -> np.ndarray:
        """Texts -> normalised embeddings [N, E] (TokenizerError for empty text)."""
        fn = self._encoder("encode_text")
        return np.concatenate([np.asarray(fn(params, self.tokenizer.encode(texts[i:i + batch_size])))
                               for i in range(0, len(texts), batch_size)])

    def logit_scale(self, params) -> float:
        return float(min(np.exp(float(params["log_scale"])), clip_lib.MAX_LOGIT_SCALE))

    # ---- evaluation -------------------------------------------------------------------------------
    def zero_shot_weights(self, params, class_texts: list[list[str]]) -> np.ndarray:
        """Class embeddings [classes, E] from prompts class_texts[c] = [text, ...] (the same number
        per class): the normalised mean of each class's normalised prompt embeddings (CLIP's
        prompt ensembling)."""
        flat = [t for texts in class_texts for t in texts]
        emb = self.embed_texts(params, flat).reshape(len(class_texts), -1, self.config.model.embed_dim)
        return contrastive.normalise(emb.mean(axis=1))

    def evaluate(self, state):
        params = self.eval_params(state)
        test = self.eval_dataset()
        test_emb = self.embed_images(params, test.arrays["image"], self.config.eval.batch_size)
        out = {"logit_scale": self.logit_scale(params), "num_test": int(len(test_emb))}
        if self.text_source == "digit_templates":
            out.update(self._evaluate_digits(params, test, test_emb))
        elif self.text_source == "class_names":
            out.update(self._evaluate_class_names(params, test, test_emb))
        else:
            out.update(self._evaluate_retrieval(params, test, test_emb))
        return out

    def _evaluate_digits(self, params, test, test_emb):
        labels = test.arrays["label"]
        # Templates take the digit as a word ({w}) or a numeral ({d}): fill each with its own form.
        templates = captions.DIGIT_TEMPLATES
        ensembled = self.zero_shot_weights(params, [[captions.digit_caption(c, t) for t in templates]
                                                    for c in range(10)])
        per_template = [np.mean((test_emb @ self.zero_shot_weights(
            params, [[captions.digit_caption(c, t)] for c in range(10)]).T).argmax(1) == labels) for t in templates]
        train_emb = self.embed_images(params, self.dataset.arrays["image"], self.config.eval.batch_size)
        probe = contrastive.linear_probe(train_emb, self.dataset.arrays["label"], test_emb, labels, 10)
        return {"test_zeroshot_accuracy": float(np.mean((test_emb @ ensembled.T).argmax(1) == labels)),
                "test_zeroshot_accuracy_one_template_mean": float(np.mean(per_template)),
                "test_zeroshot_accuracy_one_template_worst": float(np.min(per_template)),
                "test_linear_probe_accuracy": probe}

    def _evaluate_class_names(self, params, test, test_emb):
        """Zero-shot top-1 accuracy on the test split: each image gets the class whose prompt
        embedding is nearest, with the prompt "a photo of a {class}." alone and with CLASS_TEMPLATES
        ensembled (CLIP sec. 3.1.4)."""
        labels = jnp.asarray(test.arrays["label"])
        single = self.zero_shot_weights(params, [[CLASS_TEMPLATES[0].format(n)] for n in self.class_names])
        ensembled = self.zero_shot_weights(params, [[t.format(n) for t in CLASS_TEMPLATES] for n in self.class_names])
        return {"test_zeroshot_accuracy": float(clip_lib.zero_shot_accuracy(test_emb, single, labels)),
                "test_zeroshot_accuracy_ensemble": float(clip_lib.zero_shot_accuracy(test_emb, ensembled, labels)),
                "num_classes": len(self.class_names)}

    def _evaluate_retrieval(self, params, test, test_emb):
        out = {}
        train_full = set(self.dataset.arrays["caption"].tolist())
        for style in shapes_lib.CAPTION_STYLES:
            texts = [str(t) for t in test.arrays[shapes_lib.CAPTION_KEYS[style]]]
            keys = captions.scene_keys(style, test.arrays)
            text_emb = self.embed_texts(params, texts)
            scores = contrastive.retrieval_scores(text_emb, test_emb, keys, texts)
            out.update({f"test_{style}_{k}": v for k, v in scores.items()})
            if style == "full":  # scenes whose caption never occurs in training: unseen combinations
                novel = np.array([t not in train_full for t in texts])
                out["test_full_novel_captions"] = int(novel.sum())
                if novel.any():
                    key_id = {k: i for i, k in enumerate(dict.fromkeys(keys))}
                    ids = np.array([key_id[k] for k in keys])
                    sim = text_emb[novel] @ test_emb.T
                    r1 = contrastive.recall_at_k(sim, ids[novel][:, None] == ids[None, :], ks=(1,))[1]
                    out["test_full_novel_t2i_r1"] = r1
                out.update(contrastive.clip_score_summary(test_emb, text_emb))  # the full captions
        return out

