"""jaxgen: generative models in functional JAX/Flax.

Models are Flax Linen modules (jaxgen.nn, jaxgen.models); everything else is plain functions over
pytrees: tasks (init / train_step / sample / evaluate), the data pipeline, and the training engine.
"""

__version__ = "0.1.0"
