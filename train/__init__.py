"""Training: the ``python -m train`` CLI, LightningModules, losses, metrics and optimizers.

The only package that imports Lightning, Hydra and OmegaConf. It reaches models through
``zoo.build_model`` and data through ``datasets.atomistic.build_atomistic_data``.

- ``cli`` / ``__main__``: ``python -m train config=NAME key=value ...``; ``config``: Hydra composition
  of ``configs/`` into plain dicts;
- ``experiment``: one run (seed -> data -> statistics -> model -> module -> Trainer -> fit -> test);
- ``statistics``: E0s, average neighbours, scale and shift filled in from the data;
- ``potential``: the LightningModule; ``losses``: MACE's weighted and Huber losses; ``metrics``:
  MAE/RMSE exact under DDP; ``schedule``: warm-up then plateau; ``ema``: weight averaging;
- ``data_module``: DDP-correct loaders; ``checkpoint``: atomic best/last checkpoints;
  ``parity``: the parity plot; ``optim``: optimizers by name.
"""
