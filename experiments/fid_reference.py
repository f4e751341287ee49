"""Reference pool3 features from pytorch-fid's own network, for jaxgen's FID Inception parity test.

Run once, in an environment with torch, torchvision and pytorch-fid (0.3.0), with the weights file:

    python -m experiments.fid_reference --weights default_1.pt \
        --out tests/eval/data/fid_reference.npz

It builds `pytorch_fid.inception.InceptionV3` (pool3 block, its own resize and scaling) with the
given weights instead of the download pytorch-fid would do, feeds it 12 deterministic 32x32 images
(6 from the `shapes` test split, 6 uniform noise), and stores the images (uint8), the torch features
[12, 2048] and the FID between the two groups of 6 (jaxgen.eval.frechet on the torch features).
tests/eval/test_fid.py compares jaxgen's features and FID on the same images with these.

`reference_network` is also what the tests use to build pytorch-fid's network with random weights.
"""
from __future__ import annotations

import argparse
import contextlib
from unittest import mock

import numpy as np

NUM_SHAPES, NUM_NOISE, SIZE = 6, 6, 32


def reference_network(state_dict: dict | None = None, seed: int = 0):
    """(net, weights): pytorch-fid's InceptionV3 returning pool3 ([N, 3, H, W] in [0, 1] ->
    [[N, 2048, 1, 1]]), in eval mode, with `state_dict` (torchvision-style keys) or, when None,
    random weights whose batch norms have random gamma, beta and statistics so that every mapped
    tensor matters; and the torchvision-style state dict it holds (InceptionV3 renames the layers
    blocks.0.0, ...; this one has the names jaxgen converts from)."""
    import torch
    from pytorch_fid import inception as pf

    # pytorch-fid loads its weights from a URL inside fid_inception_v3; hand it ours instead (or,
    # for random weights, skip the load and keep torch's initialisation).
    if state_dict is not None and "fc.weight" not in state_dict:
        # fid-helper's file stops at pool3; the 1008-way logits layer is unused for FID
        state_dict = {**state_dict, "fc.weight": torch.zeros(1008, 2048),
                      "fc.bias": torch.zeros(1008)}
    loader = mock.patch.object(pf, "load_state_dict_from_url", lambda *a, **k: state_dict)
    no_load = (mock.patch.object(torch.nn.Module, "load_state_dict", lambda *a, **k: None)
               if state_dict is None else contextlib.nullcontext())
    built = []   # the torchvision Inception3 that InceptionV3 takes its layers from
    build = pf.fid_inception_v3
    recorder = mock.patch.object(pf, "fid_inception_v3", lambda: built.append(build()) or built[0])
    torch.manual_seed(seed)
    with loader, no_load, recorder:
        net = pf.InceptionV3([pf.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    if state_dict is None:
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 2.0)
    return net.eval(), built[0].state_dict()


def torch_features(net, images: np.ndarray) -> np.ndarray:
    """Images [N, H, W, C] float in [0, 1] (C = 1 is repeated to 3) -> pool3 features [N, 2048]."""
    import torch
    x = torch.from_numpy(np.ascontiguousarray(images, np.float32)).permute(0, 3, 1, 2)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    with torch.no_grad():
        return net(x)[0][:, :, 0, 0].numpy()


def reference_images() -> np.ndarray:
    """12 deterministic images uint8 [12, 32, 32, 3]: 6 shapes test images, then 6 noise images."""
    from jaxgen.data import load
    shapes = np.asarray(load("shapes", "test").arrays["image"][:NUM_SHAPES])
    if shapes.shape[1:] != (SIZE, SIZE, 3):
        raise ValueError(f"expected 32x32 RGB shapes images, got {shapes.shape}.")
    noise = np.random.default_rng(0).integers(0, 256, (NUM_NOISE, SIZE, SIZE, 3), np.uint8)
    return np.concatenate([shapes, noise])


def main() -> None:
    from jaxgen.eval.frechet import frechet_distance
    from jaxgen.eval.inception import read_torch_weights
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", required=True, help="a weights file that "
                        "jaxgen.eval.inception accepts (its SHA-256 is checked)")
    parser.add_argument("--out", default="tests/eval/data/fid_reference.npz")
    args = parser.parse_args()

    state_dict = read_torch_weights(args.weights)
    net, _ = reference_network(state_dict)
    images = reference_images()
    feats = torch_features(net, images.astype(np.float32) / 255.0)
    fid = frechet_distance(feats[:NUM_SHAPES], feats[NUM_SHAPES:])
    np.savez_compressed(args.out, images=images, features=feats.astype(np.float32),
                        fid=np.float64(fid), num_shapes=NUM_SHAPES)
    print(f"wrote {args.out}: features {feats.shape}, FID(shapes, noise) = {fid:.6f}")


if __name__ == "__main__":
    main()
