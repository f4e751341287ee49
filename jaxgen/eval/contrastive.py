"""Evaluating a text-image embedding: retrieval recall, a linear probe, the CLIP score, and
`CLIPScorer`, a trained `clip` run used by other families (text-to-image scoring, text encoding).

Retrieval with ambiguous captions. Many held-out scenes share a caption's content, so a retrieval
is a hit when the retrieved item *matches* the query under the caption's style (equal
`captions.scene_key`), not only when it is the query's own scene; otherwise the best possible
Recall@1 of "a red circle" would be 1 / (number of scenes with one red circle).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

KS = (1, 5, 10)


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def recall_at_k(similarity: np.ndarray, relevant: np.ndarray, ks=KS) -> dict[int, float]:
    """similarity [Q, C], relevant bool [Q, C] -> {k: fraction of queries with a relevant candidate
    among their k most similar}."""
    order = np.argsort(-similarity, axis=1, kind="stable")
    hits = np.take_along_axis(relevant, order, axis=1)  # [Q, C], by rank
    first = np.where(hits.any(1), hits.argmax(1), similarity.shape[1])  # rank of the first hit
    return {k: float(np.mean(first < k)) for k in ks}


def retrieval_scores(text_emb: np.ndarray, image_emb: np.ndarray, keys: list, texts: list[str],
                     ks=KS) -> dict[str, float]:
    """Recall@k both ways for N scenes with embeddings image_emb [N, E], their captions `texts` [N]
    (embedded as text_emb [N, E]) and content keys [N] (a hit = equal keys).

    text->image: each scene's caption queries the N images. image->text: each image queries the
    distinct captions (duplicates would count one caption several times).
    """
    ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    key_id = np.array([ids[k] for k in keys])
    t2i = recall_at_k(text_emb @ image_emb.T, key_id[:, None] == key_id[None, :], ks)
    first_of = {}
    for i, t in enumerate(texts):
        first_of.setdefault(t, i)
    distinct = np.array(list(first_of.values()))
    i2t = recall_at_k(image_emb @ text_emb[distinct].T, key_id[:, None] == key_id[distinct][None, :], ks)
    out = {f"t2i_r{k}": v for k, v in t2i.items()}
    out.update({f"i2t_r{k}": v for k, v in i2t.items()})
    out["distinct_captions"] = len(distinct)
    return out


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 num_classes: int, steps: int = 1000, lr: float = 0.05, l2: float = 1e-4) -> float:
    """Test accuracy of multinomial logistic regression on frozen features [N, F] (standardised with
    the train statistics; full-batch Adam, L2 penalty `l2`), the linear-probe protocol of CLIP."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    xs, xt = jnp.asarray((train_x - mean) / std), jnp.asarray((test_x - mean) / std)
    y = jnp.asarray(train_y)
    params = (jnp.zeros((train_x.shape[1], num_classes)), jnp.zeros((num_classes,)))
    tx = optax.adam(lr)

    def loss(p):
        logits = xs @ p[0] + p[1]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean() + l2 * jnp.sum(p[0] ** 2)

    def step(carry, _):
        p, s = carry
        updates, s = tx.update(jax.grad(loss)(p), s, p)
        return (optax.apply_updates(p, updates), s), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
    pred = np.asarray(jnp.argmax(xt @ params[0] + params[1], axis=1))
    return float(np.mean(pred == test_y))


def clip_score(image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """CLIP score of each (image, text) pair [N]: 100 * max(cos, 0) of the normalised embeddings
    (Hessel et al. 2021 with the 100 scale torchmetrics uses)."""
    return 100.0 * np.maximum(np.sum(normalise(image_emb) * normalise(text_emb), axis=-1), 0.0)


def clip_score_summary(image_emb: np.ndarray, text_emb: np.ndarray) -> dict[str, float]:
    """Mean CLIP score of the N matching pairs and of N mismatched ones (each image with the next
    scene's caption), the gap a text-to-image model's score should be read against."""
    return {"clip_score_matching": float(clip_score(image_emb, text_emb).mean()),
            "clip_score_mismatched": float(clip_score(image_emb, np.roll(text_emb, 1, axis=0)).mean())}


class CLIPScorer:
    """A trained `clip` run: embeddings of images and texts, and their CLIP score.

    `config`, `task`, `params`: a clip task and its sampling params, from a run folder or a
    pretrained model (jaxgen.tasks.runs.clip_scorer loads either); `step`: its training step (None
    if unknown). Images are float [N, H, W, C] in [0, 1] (any resolution: resized to the model's) or
    integer images in the run's dataset levels.
    """

    def __init__(self, config, task, params, step: int | None = None):
        self.config, self.task, self.params, self.step = config, task, params, step

    def images(self, images: np.ndarray) -> np.ndarray:
        return self.task.embed_images(self.params, images)

    def texts(self, texts: list[str]) -> np.ndarray:
        return self.task.embed_texts(self.params, list(texts))

    def score(self, images: np.ndarray, texts: list[str]) -> np.ndarray:
        """CLIP score [N] of images [N, ...] against their texts [N]."""
        return clip_score(self.images(images), self.texts(texts))
