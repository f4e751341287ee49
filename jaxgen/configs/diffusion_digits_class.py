"""Class-conditional diffusion on the embedded digits (16x16) with classifier-free guidance: the
label is dropped with probability 0.1 in training, so one network is both the conditional and the
unconditional model.

    jaxgen train diffusion_digits_class --workdir runs/diffusion_digits_class \
        --config.eval.classifier_workdir=runs/classifier_digits
    jaxgen eval --workdir runs/diffusion_digits_class
    python -m experiments.diffusion_sweeps --workdir runs/diffusion_digits_class \
        --classifier runs/classifier_digits      # guidance and DDIM-steps sweeps

Args as diffusion_digits ('', '8x8', 'demo', 'quick', each with an optional '_flow' or '_dit' suffix:
flow matching, or the transformer denoiser DiT in place of the U-Net). The
flow-matching model of the issue's comparison, with the network and step budget of '8x8':

    jaxgen train diffusion_digits_class:8x8_flow --workdir runs/diffusion_digits_class_8x8_flow \
        --config.eval.classifier_workdir=runs/classifier_digits
"""
import ml_collections

from jaxgen.configs import common, diffusion_digits


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = diffusion_digits.base(conditioning="class")
    c.sample.guidance = 2.0
    # "8x8" samples by DDIM, as the other variants do (diffusion_digits' own "8x8" switches to ancestral DDPM).
    variants = {"8x8": diffusion_digits.native_8x8, "demo": diffusion_digits.demo, "quick": diffusion_digits.quick}
    return common.apply_variant(c, arg, variants, name="diffusion_digits_class",
                                modifiers={"flow": diffusion_digits.use_flow, "dit": diffusion_digits.use_dit})
