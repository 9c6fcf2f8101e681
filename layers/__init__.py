"""Math and ``nn.Module`` building blocks: irreps, spherical harmonics, tensor products, kernels.

Knows nothing of atoms files, Lightning or Hydra (checked by import-linter).
"""
