"""Training: the ``python -m train`` CLI, LightningModules, losses, metrics and optimizers.

The only package that imports Lightning, Hydra and OmegaConf.
"""
