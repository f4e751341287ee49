"""Text: a word-level tokenizer for any Unicode text, and a transformer encoder over token ids.

Tokenizer. Text is NFKC-normalised and case-folded, then split into words (runs of Unicode letters
and digits) and single punctuation marks. The vocabulary is built from the training captions (most
frequent first, ties alphabetical, so it is the same on every machine); four special tokens come
first:

    [PAD] = 0   [UNK] = 1 (any word not in the vocabulary)   [BOS] = 2   [EOS] = 3

`encode` gives [BOS] w_1 ... w_n [EOS] [PAD]..., int32 [B, context_length]; a text longer than the
context keeps its first context_length - 2 words (with a `TruncationWarning`) and still ends in
[EOS], which is where the encoder pools. Empty text (nothing but white space) is an error: it has
no meaning to embed. The vocabulary saves to and loads from JSON, beside a run's checkpoints.

TextEncoder. Token embedding plus learned position embedding, pre-LayerNorm transformer blocks
(bidirectional self-attention with padding masked out; Vaswani et al. 2017 with the pre-norm of
GPT-2 / CLIP), a final LayerNorm, and pooling at the [EOS] position (CLIP's "end token" pooling).
It returns both the per-token features (for cross-attention, e.g. a diffusion U-Net) and the pooled
vector.
"""
from __future__ import annotations

import collections
import json
import os
import re
import unicodedata
import warnings
from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxgen.errors import UserError
from jaxgen.nn.attention import MultiHeadAttention
from jaxgen.nn.conv import lecun_normal_flat

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")
_WORD = re.compile(r"[^\W_]+|[^\w\s]|_", re.UNICODE)  # letter/digit runs, or one punctuation mark


class TokenizerError(UserError, ValueError):
    """Text that cannot be tokenized (empty), or a vocabulary file that cannot be read."""


class TruncationWarning(UserWarning):
    """A text had more words than the context holds; its tail was dropped."""


def split_words(text: str) -> list[str]:
    """NFKC-normalised, case-folded words and punctuation marks of `text`."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


class Tokenizer:
    """Word-level tokenizer with a fixed vocabulary and context length (see the module docstring)."""

    def __init__(self, words: Sequence[str], context_length: int):
        if context_length < 3:
            raise TokenizerError(f"the context length must be at least 3 ([BOS] word [EOS]), not {context_length}.")
        words = list(words)
        if words[:len(SPECIAL_TOKENS)] != list(SPECIAL_TOKENS):
            words = list(SPECIAL_TOKENS) + [w for w in words if w not in SPECIAL_TOKENS]
        if len(set(words)) != len(words):
            raise TokenizerError("a vocabulary lists some word twice.")
        self.words = words
        self.context_length = context_length
        self._ids = {w: i for i, w in enumerate(words)}

    @classmethod
    def build(cls, texts: Iterable[str], context_length: int, min_count: int = 1) -> "Tokenizer":
        """The vocabulary of `texts`: every word seen at least `min_count` times, most frequent
        first (ties in alphabetical order, so the ids do not depend on the order of `texts`)."""
        counts = collections.Counter(w for t in texts for w in split_words(t))
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls(list(SPECIAL_TOKENS) + kept, context_length)

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def encode(self, texts: str | Sequence[str]) -> np.ndarray:
        """Text(s) -> token ids int32 [B, context_length] (a single string gives B = 1)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = np.full((len(texts), self.context_length), PAD, np.int32)
        room = self.context_length - 2
        for row, text in enumerate(texts):
            words = split_words(text)
            if not words:
                raise TokenizerError(f"cannot tokenize empty text {text!r}: give at least one word.")
            if len(words) > room:
                warnings.warn(f"text of {len(words)} words truncated to the context of {room} words: "
                              f"{text[:60]!r}...", TruncationWarning, stacklevel=2)
                words = words[:room]
            ids = [self._ids.get(w, UNK) for w in words]
            out[row, :len(ids) + 2] = [BOS, *ids, EOS]
        return out

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids -> the words between [BOS] and [EOS], space-separated (unknown words as [UNK])."""
        words = [self.words[i] for i in ids if i not in (PAD, BOS, EOS)]
        return " ".join(words)

    def to_json(self) -> str:
        return json.dumps({"kind": "words", "context_length": self.context_length, "words": self.words})

    @classmethod
    def from_json(cls, text: str) -> "Tokenizer":
        try:
            d = json.loads(text)
            return cls(d["words"], int(d["context_length"]))
        except (ValueError, KeyError, TypeError) as e:
            raise TokenizerError(f"not a jaxgen tokenizer file ({type(e).__name__}: {e}).") from e

    def save(self, path: str) -> None:
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(self.to_json())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> "Tokenizer":
        with open(path, encoding="utf-8") as f:
            return cls.from_json(f.read())

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Tokenizer) and self.words == other.words
                and self.context_length == other.context_length)


# ------------------------------------------------------------------------------------ encoder
_init = lecun_normal_flat()


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x)). x [B, L, D] -> [B, L, D];
    mask [B, L] is True for real tokens (padding is never attended to)."""

    num_heads: int = 4
    mlp_ratio: int = 4
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        d = x.shape[-1]
        h = nn.LayerNorm(dtype=self.dtype, name="norm_attn")(x)
        x = x + MultiHeadAttention(self.num_heads, dtype=self.dtype, key_bias=False, name="attn")(h, mask=mask)
        h = nn.LayerNorm(dtype=self.dtype, name="norm_mlp")(x)
        h = nn.Dense(self.mlp_ratio * d, dtype=self.dtype, kernel_init=_init, name="mlp_in")(h)
        h = nn.Dense(d, dtype=self.dtype, kernel_init=_init, name="mlp_out")(nn.gelu(h))
        return x + h


class TokenTransformer(nn.Module):
    """A small trainable transformer over a frozen encoder's token features: tokens [B, L, D] with
    mask [B, L] (True = a real token) -> [B, L, width].

    A Dense to `width`, `depth` pre-norm TransformerBlocks (padding masked out) and a final
    LayerNorm. GLIDE (Nichol et al. 2022, sec. 2.3) trains its text transformer with the diffusion
    model; on top of a frozen sentence encoder such a layer lets each word's feature take in its
    neighbours (a noun its adjective: "red circle" vs "blue circle"), which the frozen features of a
    sentence-embedding model hardly do. No position embedding: the frozen features carry positions.
    Measured on shapes/t2i (README, text-to-image A/B): two blocks in front of the U-Net's
    cross-attention made places and colour bindings much worse after 20,000 steps, not better.
    """

    width: int = 128
    depth: int = 2
    num_heads: int = 4
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, tokens: jax.Array, mask: jax.Array) -> jax.Array:
        x = nn.Dense(self.width, dtype=self.dtype, kernel_init=_init, name="proj_in")(tokens)
        for i in range(self.depth):
            x = TransformerBlock(self.num_heads, dtype=self.dtype, name=f"block_{i}")(x, mask)
        return nn.LayerNorm(dtype=self.dtype, name="norm_final")(x).astype(jnp.float32)


class TextEncoder(nn.Module):
    """Token ids [B, L] -> (token features [B, L, width], pooled [B, width]).

    Pooled = the final-LayerNorm features at each text's [EOS] position. Positions past [EOS] are
    padding: they are masked out of attention, and their own features are left as computed (use the
    mask `tokens != PAD` when consuming the per-token features).
    """

    vocab_size: int
    context_length: int
    width: int = 128
    depth: int = 2
    num_heads: int = 4
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
        if tokens.ndim != 2 or tokens.shape[1] != self.context_length:
            raise ValueError(f"tokens must be [B, {self.context_length}], not {tokens.shape}.")
        x = nn.Embed(self.vocab_size, self.width, embedding_init=nn.initializers.normal(0.02),
                     name="token_embedding")(tokens)
        pos = self.param("position_embedding", nn.initializers.normal(0.01),
                         (self.context_length, self.width))
        x = (x + pos[None]).astype(self.dtype or jnp.float32)
        mask = tokens != PAD
        for i in range(self.depth):
            x = TransformerBlock(self.num_heads, dtype=self.dtype, name=f"block_{i}")(x, mask)
        x = nn.LayerNorm(dtype=self.dtype, name="norm_final")(x)
        eos = jnp.argmax(tokens == EOS, axis=1)  # each text has exactly one [EOS]
        pooled = jnp.take_along_axis(x, eos[:, None, None], axis=1)[:, 0]
        return x, pooled
