"""Mixed precision: bfloat16 compute with float32 parameters and optimizer state.

`config.train.compute_dtype` = 'float32' (default) or 'bfloat16'. With 'bfloat16' every model's
convolutions, dense layers and attention matmuls take bfloat16 inputs and produce bfloat16
activations (the `dtype` attribute of the Linen modules), while:
  * parameters stay float32 (Flax's param_dtype): each layer casts its float32 weights to bfloat16
    when it runs, so the gradients, the optimizer update and the optimizer state are all float32,
    and small updates are not rounded away (bfloat16 keeps 8 significant bits: an update below
    1/256 of a weight would vanish if the weights themselves were bfloat16);
  * normalization statistics (GroupNorm), softmax and attention logits, the model outputs fed to the
    losses, the losses themselves and the diffusion samplers' update math are float32.
bfloat16 has float32's exponent range, so unlike float16 it needs no loss scaling.

On TPUs and recent GPUs bfloat16 matmuls and convolutions run at several times the float32 rate and
halve activation memory; on CPU, XLA converts bfloat16 convolutions back to float32, so the switch
is only correct there, not faster.
"""
import jax.numpy as jnp
import ml_collections

from jaxgen.config import COMPUTE_DTYPES, ConfigError


def compute_dtype(config: ml_collections.ConfigDict) -> jnp.dtype | None:
    """The models' activation dtype for config.train.compute_dtype: bfloat16, or None for float32.

    None (not jnp.float32) for the default, so that the modules infer float32 from their params
    exactly as they did before the switch existed (the same compiled program).
    """
    name = config.train.get("compute_dtype", "float32")
    if name not in COMPUTE_DTYPES:  # config.validate says so first; this guards hand-built configs
        raise ConfigError(f"train.compute_dtype must be one of {COMPUTE_DTYPES}, not {name!r}.")
    return jnp.bfloat16 if name == "bfloat16" else None
