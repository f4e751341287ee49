"""The frozen text encoder of the text-to-image families: texts -> token features, with a cache.

`TextEncoder(spec)` puts a frozen encoder behind one host-side call, texts -> (tokens [N, L, D],
mask [N, L], pooled [N, P]) as numpy, with a cache per distinct text. The encoder's parameters live
on this object, never in a train state, and the features reach the train step as batch data, so no
gradient can reach them. Training captions of `shapes` repeat (a few thousand distinct captions over
10,000 scenes), so each is encoded once per run. It is not a model (jaxgen.models): it may restore a
trained CLIP run (jaxgen.tasks.runs), so it lives in the tasks layer, beside the tasks that use it
(text2image, unclip's decoder).
"""
from __future__ import annotations

import jax
import numpy as np

from jaxgen.errors import UserError
from jaxgen.models import clip as clip_lib
from jaxgen.nn.bert import DEFAULT_NAMES, FrozenTextEncoder
from jaxgen.tasks import runs

ENCODERS = ("minilm", "clip:<workdir>")
_CHUNK = 64  # texts encoded per call: one compiled shape, whatever the number of new texts


class TextEncoderError(UserError, ValueError):
    """A model.text_encoder value that names no usable encoder."""


class TextEncoder:
    """A frozen text encoder with a per-text cache, chosen by `spec`:

    'minilm' (or 'all-MiniLM-L6-v2', or a BERT-layout checkpoint directory 'bert:<path>'): the
    pretrained encoder of jaxgen.nn.bert with `max_length` word pieces; pooled = its normalised mean.
    'clip:<workdir>': the text tower of a trained jaxgen `clip` run (its word-level tokenizer and
    context length); tokens = the tower's per-token features, pooled = its projected, normalised
    text embedding.

    `__call__(texts)` -> {"context": float32 [N, L, width], "context_mask": bool [N, L],
    "pooled": float32 [N, pooled_dim]}; `num_params` counts the frozen parameters. Empty text raises
    the tokenizer's error; over-long text is truncated with a TruncationWarning (once per distinct
    text: later calls hit the cache).
    """

    def __init__(self, spec: str, max_length: int = 32):
        self.spec = spec
        self._cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        if spec.startswith("clip:"):
            workdir = spec[len("clip:"):]
            if not workdir:
                raise TextEncoderError("model.text_encoder 'clip:' needs the workdir of a trained clip run after the "
                                       "colon, e.g. 'clip:runs/clip_shapes'.")
            scorer = runs.clip_scorer(workdir)
            self.tokenizer = scorer.task.tokenizer
            self.max_length = self.tokenizer.context_length
            self.width = int(scorer.config.model.text_width)
            self.pooled_dim = int(scorer.config.model.embed_dim)
            model, params = scorer.task.model, scorer.params
            self.num_params = _count({k: params[k] for k in ("text_encoder", "text_projection")})
            self._features = jax.jit(lambda ids: model.apply({"params": params}, ids,
                                                             method=clip_lib.CLIP.text_features))
            self._tokenize = lambda texts: (self.tokenizer.encode(texts),)
            self._mask_of = lambda ids: ids != 0  # PAD = 0 in jaxgen.nn.text
        else:
            path = spec[len("bert:"):] if spec.startswith("bert:") else spec
            if path not in DEFAULT_NAMES and not spec.startswith("bert:"):
                raise TextEncoderError(f"model.text_encoder must be 'minilm', 'bert:<checkpoint dir>' or "
                                       f"'clip:<workdir>', not {spec!r}.")
            enc = FrozenTextEncoder.from_pretrained(None if path in DEFAULT_NAMES else path, max_length=max_length)
            self.tokenizer = enc.tokenizer
            self.max_length = enc.max_length
            self.width = self.pooled_dim = enc.width
            self.num_params = _count(enc.params)
            self._features = lambda ids, mask: enc(ids, mask)[::2]  # (tokens, pooled)
            self._tokenize = enc.tokenize
            self._mask_of = None

    def __call__(self, texts) -> dict[str, np.ndarray]:
        texts = [texts] if isinstance(texts, str) else [str(t) for t in texts]
        self.fill_cache(texts)
        tokens, mask, pooled = (np.stack(x) for x in zip(*(self._cache[t] for t in texts)))
        return {"context": tokens, "context_mask": mask, "pooled": pooled}

    def fill_cache(self, texts: list[str]) -> None:
        """Encodes the texts not cached yet, in chunks of _CHUNK, without returning features."""
        new = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for start in range(0, len(new), _CHUNK):
            self._encode(new[start:start + _CHUNK])

    def _encode(self, texts: list[str]) -> None:
        """Encodes up to _CHUNK new texts (padded to _CHUNK rows with the first: one program)."""
        arrays = self._tokenize(texts)  # raises on empty text, warns on truncation
        padded = tuple(np.concatenate([a, np.repeat(a[:1], _CHUNK - len(a), 0)]) for a in arrays)
        if self._mask_of is None:  # BERT: (ids, mask) -> tokens (zero at padding), normalised mean
            mask = padded[1]
            tokens, pooled = self._features(*padded)
        else:  # CLIP tower: ids -> per-token features (padding zeroed here), projected pooled embedding
            mask = self._mask_of(padded[0])
            tokens, pooled = self._features(padded[0])
            tokens = np.where(mask[..., None], np.asarray(tokens), 0.0)
        tokens, pooled = np.asarray(tokens, np.float32), np.asarray(pooled, np.float32)
        for i, t in enumerate(texts):
            self._cache[t] = (tokens[i], np.asarray(mask[i], bool), pooled[i])

    def __len__(self) -> int:
        """How many distinct texts are cached."""
        return len(self._cache)


def _count(params) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
