"""Measure the rank the cp method picks by default (target 1e-3) and the error it reaches.

Prints a reStructuredText table for the docstring of layers/tensor_product/cp.py:

    python scripts/cp_ranks.py
"""

import time

from e3nn import o3

from layers.tensor_product.cp_fit import auto_rank_cp, coupling_tensor

CASES = [
    ("0e+1o", "0e+1o", "0e+1o"),
    ("0e+1o", "0e+1o", "0e+1o+1e"),
    ("0e+1o+2e", "0e+1o+2e", "0e+1o+2e"),
    ("0e+1o+2e", "0e+1o+2e", "0e+1o+1e+2e+2o"),
    ("0e+1o", "0e+1o+2e+3o", "0e+1o+1e+2e+2o+3e+3o"),
    ("0e+1o+2e+3o", "0e+1o+2e+3o", "0e+1o+2e+3o"),
    ("0e+1o+2e+3o+4e", "0e+1o+2e+3o+4e", "0e+1o+2e+3o+4e"),
]


def main() -> None:
    rows = []
    for case in CASES:
        irreps = [o3.Irreps(i) for i in case]
        tensor = coupling_tensor(*irreps)
        started = time.time()
        factors = auto_rank_cp(tensor)
        rows.append((f"{case[0]} x {case[1]} -> {case[2]}", factors.rank, factors.relative_error(tensor), tensor.shape, time.time() - started))
        print(rows[-1], flush=True)
    width = max(len(r[0]) for r in rows)
    rule = f"{'=' * width}  ====  ==============  ========="
    print(rule)
    print(f"{'irreps (in1 x in2 -> out, one copy each)':{width}}  rank  relative error  D1*D2*D3")
    print(rule)
    for name, rank, error, shape, _ in rows:
        print(f"{name:{width}}  {rank:4d}  {error:14.1e}  {shape[0]}*{shape[1]}*{shape[2]}")
    print(rule)


if __name__ == "__main__":
    main()
