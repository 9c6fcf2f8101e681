"""Layers of neural operators: Fourier and spherical convolutions, factorised spectral weights,
multigrid V-cycles and parameter-guided channel attention.

* :class:`SpectralConv` (FNO, 1-3 D) takes its weights as a module: :class:`DenseSpectralWeights`,
  :class:`CPSpectralWeights` or :class:`TuckerSpectralWeights` (TFNO).
* :class:`SphericalConv` (SFNO) on Gauss-Legendre or equiangular grids, with its own
  :class:`SphericalHarmonicTransform`.
* :class:`VCycle` (MgNO), textbook geometric multigrid when ``init="multigrid"``.
* :class:`ParameterChannelAttention` (CAPE).
* :func:`grid_coordinates` (``"periodic"`` or ``"nodes"`` sample points) and :class:`ChannelNormalisation`
  with :func:`channel_statistics`: what every operator model in ``zoo`` shares.
"""

from layers.spectral.channel_attention import ParameterChannelAttention
from layers.spectral.factorized_weights import CPSpectralWeights, DenseSpectralWeights, SpectralWeights, TuckerSpectralWeights
from layers.spectral.grid import grid_coordinates
from layers.spectral.multigrid import VCycle
from layers.spectral.normalisation import ChannelNormalisation, channel_statistics
from layers.spectral.spectral_conv import SpectralConv, kept_mode_shape
from layers.spectral.spherical_conv import SphericalConv, SphericalHarmonicTransform

__all__ = [
    "CPSpectralWeights",
    "ChannelNormalisation",
    "DenseSpectralWeights",
    "ParameterChannelAttention",
    "SpectralConv",
    "SpectralWeights",
    "SphericalConv",
    "SphericalHarmonicTransform",
    "TuckerSpectralWeights",
    "VCycle",
    "channel_statistics",
    "grid_coordinates",
    "kept_mode_shape",
]
