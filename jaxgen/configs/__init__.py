"""The configs that ship with jaxgen: `jaxgen.configs.<family>_<dataset>` modules, each with
`get_config(arg='') -> ml_collections.ConfigDict` (`jaxgen train vae_digits:quick` calls
`get_config('quick')`; `jaxgen configs` lists them). `common` holds what they share and is not a
config itself.
"""
