"""Class-conditional diffusion on the embedded digits (16x16) with classifier-free guidance: the
label is dropped with probability 0.1 in training, so one network is both the conditional and the
unconditional model.

    jaxgen train diffusion_digits_class --workdir runs/diffusion_digits_class \
        --config.eval.classifier_workdir=runs/classifier_digits
    jaxgen eval --workdir runs/diffusion_digits_class
    python -m experiments.diffusion_sweeps --workdir runs/diffusion_digits_class \
        --classifier runs/classifier_digits      # guidance and DDIM-steps sweeps

Args as diffusion_digits ('', '8x8', 'demo', 'quick', each with an optional '_flow' suffix). The
flow-matching model of the issue's comparison, with the network and step budget of '8x8':

    jaxgen train diffusion_digits_class:8x8_flow --workdir runs/diffusion_digits_class_8x8_flow \
        --config.eval.classifier_workdir=runs/classifier_digits
"""
import ml_collections

from experiments.configs.diffusion_digits import base, split_flow, use_flow


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    variant, flow = split_flow(arg)
    c = base(variant, conditioning="class")
    c.sample.guidance = 2.0
    return use_flow(c) if flow else c
