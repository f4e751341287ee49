"""Class-conditional diffusion on the embedded digits (16x16) with classifier-free guidance: the
label is dropped with probability 0.1 in training, so one network is both the conditional and the
unconditional model.

    jaxgen train diffusion_digits_class --workdir runs/diffusion_digits_class \
        --config.eval.classifier_workdir=runs/classifier_digits
    jaxgen eval --workdir runs/diffusion_digits_class
    python -m experiments.diffusion_sweeps --workdir runs/diffusion_digits_class \
        --classifier runs/classifier_digits      # guidance and DDIM-steps sweeps

Args as diffusion_digits ('', '8x8', 'demo', 'quick').
"""
import ml_collections

from experiments.configs.diffusion_digits import base


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = base(arg, conditioning="class")
    c.sample.guidance = 2.0
    return c
