"""Regenerate tests/layers/tensor_product/golden/gaunt_coefficients.json.

Gaunt coefficients G[m1, m2, m3] = integral of Y_l1m1 Y_l2m2 Y_l3m3 over the sphere (e3nn's real,
orthonormal spherical harmonics), computed the Clebsch-Gordan way and independently of equizoo:

* direction: G is proportional to e3nn's real-basis ``wigner_3j(l1, l2, l3)`` (unit Frobenius norm);
* magnitude: ||G||_F^2 = (2l1+1)(2l2+1)(2l3+1)/(4 pi) * (l1 l2 l3; 0 0 0)^2, with the 3j symbol
  from sympy's exact Racah formula;
* sign: from contracting e3nn's spherical harmonics with the 3j tensor at a few directions.

Run from the repository root: ``python scripts/make_gaunt_golden.py``.
"""

import json
import math
from pathlib import Path

import torch
from e3nn import o3
from sympy.physics.wigner import wigner_3j as racah_3j

LMAX = 3
OUT = Path(__file__).resolve().parents[1] / "tests/layers/tensor_product/golden/gaunt_coefficients.json"


def gaunt(l1: int, l2: int, l3: int) -> torch.Tensor:
    w3j = o3.wigner_3j(l1, l2, l3, dtype=torch.float64)
    magnitude = math.sqrt((2 * l1 + 1) * (2 * l2 + 1) * (2 * l3 + 1) / (4 * math.pi)) * abs(float(racah_3j(l1, l2, l3, 0, 0, 0)))
    r = torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = [o3.spherical_harmonics(l, r, normalize=True, normalization="integral") for l in (l1, l2, l3)]
    projection = torch.einsum("ijk,zi,zj,zk->", w3j, *y)  # sign of the proportionality constant
    return math.copysign(magnitude, float(projection)) * w3j


def main() -> None:
    entries = []
    for l1 in range(LMAX + 1):
        for l2 in range(LMAX + 1):
            for l3 in range(abs(l1 - l2), min(l1 + l2, LMAX) + 1):
                if (l1 + l2 + l3) % 2 == 0:
                    values = gaunt(l1, l2, l3)
                    entries.append({"l": [l1, l2, l3], "values": [float(f"{v:.17g}") for v in values.reshape(-1).tolist()]})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"generator": "scripts/make_gaunt_golden.py", "lmax": LMAX, "entries": entries}) + "\n")
    print(f"wrote {len(entries)} coefficient tensors to {OUT}")


if __name__ == "__main__":
    main()
