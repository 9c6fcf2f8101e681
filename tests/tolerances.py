"""All numerical tolerances of the test suite, by dtype and by kind of comparison.

kinds:
  exact      two computations of the same math (e3nn vs ours, fused vs reference, grid vs gaunt)
  equivariance  f(D x) against D f(x) for an exact method
  gradient   autograd against finite differences / a second implementation of the gradient
"""

import torch

TOLERANCES = {
    torch.float64: {
        "exact": dict(atol=1e-11, rtol=1e-10),
        "equivariance": dict(atol=1e-10, rtol=1e-9),
        "gradient": dict(atol=1e-8, rtol=1e-7),
    },
    torch.float32: {
        "exact": dict(atol=2e-5, rtol=1e-4),
        "equivariance": dict(atol=5e-5, rtol=5e-4),
        "gradient": dict(atol=1e-3, rtol=1e-2),
    },
}


def tolerance(dtype: torch.dtype, kind: str = "exact") -> dict:
    """``dict(atol=..., rtol=...)`` for ``torch.testing.assert_close``."""
    return TOLERANCES[dtype][kind]
