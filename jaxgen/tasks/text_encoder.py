"""The frozen text encoder of the text-to-image families: texts -> token features, with a cache.

`TextEncoder(spec)` puts a frozen encoder behind one host-side call, texts -> (tokens [N, L, D],
mask [N, L], pooled [N, P]) as numpy, with a cache per distinct text. The encoder's parameters live
on this object, never in a train state, and the features reach the train step as batch data, so no
gradient can reach them. Training captions of `shapes` repeat (a few thousand distinct captions over
10,000 scenes), so each is encoded once per process: encoders of the same pretrained checkpoint and
length share one loaded model and one cache (a cascade's stages, `jaxgen demo`'s runs and a test
session build many). It is not a model (jaxgen.models): it may restore a
trained CLIP run (jaxgen.tasks.runs), so it lives in the tasks layer, beside the tasks that use it
(text2image, unclip's decoder).
"""
from __future__ import annotations

import os
import warnings

import jax
import numpy as np

from jaxgen.errors import UserError
from jaxgen.models import clip as clip_lib
from jaxgen.nn.bert import DEFAULT_NAMES, FrozenTextEncoder, default_minilm_path
from jaxgen.nn.text import TruncationWarning
from jaxgen.tasks import runs

ENCODERS = ("minilm", "clip:<workdir>")
_CHUNK = 64  # texts encoded per call: one compiled shape, whatever the number of new texts


class _Features:
    """A frozen encoder's features per text, and the truncation warning of each text that had one."""

    def __init__(self):
        self.by_text: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.truncated: dict[str, str] = {}


# Pretrained BERT encoders by (checkpoint directory, max_length): the loaded model and its features,
# shared by every TextEncoder of this process. (A CLIP run's tower is not shared: the run may be
# trained further in the same process.)
_PRETRAINED: dict[tuple[str, int], tuple[FrozenTextEncoder, _Features]] = {}


class TextEncoderError(UserError, ValueError):
    """A model.text_encoder value that names no usable encoder."""


class TextEncoder:
    """A frozen text encoder with a per-text cache, chosen by `spec`:

    'minilm' (or 'all-MiniLM-L6-v2', or a BERT-layout checkpoint directory 'bert:<path>'): the
    pretrained encoder of jaxgen.nn.bert with `max_length` word pieces; pooled = its normalised mean.
    'clip:<workdir>': the text tower of a trained jaxgen `clip` run (its word-level tokenizer and
    context length); tokens = the tower's per-token features, pooled = its projected, normalised
    text embedding.

    A pretrained encoder is shared with every other of the same checkpoint and max_length in this
    process (one load, one cache); `share=False` gives this one its own (a test that compares
    against a fresh encoding).

    `__call__(texts)` -> {"context": float32 [N, L, width], "context_mask": bool [N, L],
    "pooled": float32 [N, pooled_dim]}; `num_params` counts the frozen parameters. Empty text raises
    the tokenizer's error; over-long text is truncated with a TruncationWarning (once per distinct
    text and encoder: later calls hit the cache).
    """

    def __init__(self, spec: str, max_length: int = 32, share: bool = True):
        self.spec = spec
        self._features_of = _Features()
        self._warned: set[str] = set()  # truncated texts this encoder has warned about
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
            directory = os.path.abspath(default_minilm_path() if path in DEFAULT_NAMES else path)
            key = (directory, max_length)
            if share and key in _PRETRAINED:
                enc, self._features_of = _PRETRAINED[key]
            else:
                enc = FrozenTextEncoder.from_pretrained(directory, max_length=max_length)
                if share:
                    _PRETRAINED[key] = (enc, self._features_of)
            self.tokenizer = enc.tokenizer
            self.max_length = enc.max_length
            self.width = self.pooled_dim = enc.width
            self.num_params = _count(enc.params)
            self._encoder = enc  # shared: one loaded model and one compiled program per process
            self._features = lambda ids, mask: enc(ids, mask)[::2]  # (tokens, pooled)
            self._tokenize = enc.tokenize
            self._mask_of = None

    def __call__(self, texts) -> dict[str, np.ndarray]:
        texts = [texts] if isinstance(texts, str) else [str(t) for t in texts]
        self.fill_cache(texts)
        cache = self._features_of.by_text
        tokens, mask, pooled = (np.stack(x) for x in zip(*(cache[t] for t in texts)))
        return {"context": tokens, "context_mask": mask, "pooled": pooled}

    def fill_cache(self, texts: list[str]) -> None:
        """Encodes the texts not cached yet, in chunks of _CHUNK, without returning features; warns
        (TruncationWarning) about each over-long text the first time this encoder is given it."""
        cache, truncated = self._features_of.by_text, self._features_of.truncated
        new = list(dict.fromkeys(t for t in texts if t not in cache))
        for start in range(0, len(new), _CHUNK):
            self._encode(new[start:start + _CHUNK])
        for t in dict.fromkeys(texts):
            if t in truncated and t not in self._warned:
                self._warned.add(t)
                warnings.warn(truncated[t], TruncationWarning, stacklevel=3)

    def _tokenize_recording(self, texts: list[str]) -> tuple[np.ndarray, ...]:
        """The tokenizer's arrays for `texts`, one text at a time so that each truncation warning is
        kept with its text (fill_cache says it); raises on empty text."""
        rows = []
        for t in texts:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", TruncationWarning)
                rows.append(self._tokenize([t]))
            for w in caught:
                if issubclass(w.category, TruncationWarning):
                    self._features_of.truncated[t] = str(w.message)
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return tuple(np.concatenate(parts) for parts in zip(*rows))

    def _encode(self, texts: list[str]) -> None:
        """Encodes up to _CHUNK new texts (padded to _CHUNK rows with the first: one program)."""
        arrays = self._tokenize_recording(texts)
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
            self._features_of.by_text[t] = (tokens[i], np.asarray(mask[i], bool), pooled[i])

    def __contains__(self, text: str) -> bool:
        """Whether `text`'s features are cached."""
        return text in self._features_of.by_text

    def __len__(self) -> int:
        """How many distinct texts are cached (by every encoder that shares this one's cache)."""
        return len(self._features_of.by_text)

    def __bool__(self) -> bool:
        """Always true: an encoder whose cache is still empty is an encoder (without this, __len__
        would make `if task.text_encoder:` false before the first caption is encoded)."""
        return True


def _count(params) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
