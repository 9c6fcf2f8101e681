"""Fused kernel of the Clebsch-Gordan product for channelwise modes (``uuu``; ``uvu`` with ``mul_in2 = 1``).

Each path's coupling block :math:`C^p` (normalisation included) is decomposed exactly into rank-one
terms :math:`e_a \\otimes e_b \\otimes C^p[a, b, :]`, one per nonzero ``(a, b)`` slice; the path
weights enter as the third operand through a one-hot factor, :math:`(F_3^\\top w)_r = w_{path(r)}`.
Rows are ``(z, u)`` channels, so inputs and outputs need one multiplicity throughout (MACE's
message: ``U x node irreps  x  spherical harmonics  ->  U x irreps``). Other modes are left to the
reference or the ``cueq`` kernel.
"""

from __future__ import annotations

from typing import Optional

import torch

from layers.irreps import ChannelSignal
from layers.kernels.trilinear_triton import trilinear


def unsupported(module) -> Optional[str]:
    spec = module.spec
    if spec.mode not in ("uuu", "uvu"):
        return f"the fused cg kernel covers channelwise modes (uuu, uvu with mul_in2 = 1), not {spec.mode}"
    if any(p.weight is None for p in spec.paths) or not spec.paths:
        return "the fused cg kernel needs a weight on every path"
    try:
        sig1, sig_out = ChannelSignal.of(spec.irreps_in1), ChannelSignal.of(spec.irreps_out)
        sig2 = ChannelSignal.of(spec.irreps_in2)
    except ValueError as error:
        return f"the fused cg kernel needs one multiplicity per operand ({error})"
    if spec.mode == "uvu" and sig2.mul != 1:
        return "the fused cg kernel covers uvu with mul_in2 = 1"
    if spec.mode == "uuu" and not sig1.mul == sig2.mul == sig_out.mul:
        return "uuu needs equal multiplicities"
    return None


def _plan(module):
    """Factors (float64) and channel gathers, built once per module."""
    plan = module.__dict__.get("_fused_plan")
    if plan is not None:
        return plan
    spec = module.spec
    sig1, sig2, sig_out = (ChannelSignal.of(i) for i in (spec.irreps_in1, spec.irreps_in2, spec.irreps_out))
    s1, s2, s3 = sig1.base.slices(), sig2.base.slices(), sig_out.base.slices()
    columns1, columns2, columns_w, columns_out = [], [], [], []
    for n, path in enumerate(spec.paths):
        coupling = module.master(f"coupling_{n}")
        for a in range(coupling.shape[0]):
            for b in range(coupling.shape[1]):
                if coupling[a, b].abs().max() > 0:
                    columns1.append(s1[path.i_in1].start + a)
                    columns2.append(s2[path.i_in2].start + b)
                    columns_w.append(n)
                    column = torch.zeros(sig_out.base.dim, dtype=torch.float64)
                    column[s3[path.i_out]] = coupling[a, b]
                    columns_out.append(column)
    rank = len(columns_out)

    def one_hot(indices: list[int], size: int) -> torch.Tensor:
        factor = torch.zeros(size, rank, dtype=torch.float64)
        factor[torch.tensor(indices), torch.arange(rank)] = 1.0
        return factor

    plan = {
        "signals": (sig1, sig2, sig_out),
        "factors": (
            one_hot(columns1, sig1.base.dim),
            one_hot(columns2, sig2.base.dim),
            one_hot(columns_w, len(spec.paths)),
            torch.stack(columns_out, dim=1),
        ),
        "to_channels1": sig1.to_channels_index(),
        "to_channels2": sig2.to_channels_index(),
        "from_channels": sig_out.from_channels_index(),
        "cast": {},
    }
    module.__dict__["_fused_plan"] = plan
    return plan


def fused_cg(module, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    plan = _plan(module)
    key = (x1.device, x1.dtype)
    if key not in plan["cast"]:
        plan["cast"][key] = (
            tuple(f.to(device=x1.device, dtype=x1.dtype) for f in plan["factors"]),
            tuple(plan[k].to(x1.device) for k in ("to_channels1", "to_channels2", "from_channels")),
        )
    (f1, f2, fw, f_out), (to1, to2, back) = plan["cast"][key]
    sig1, sig2, _ = plan["signals"]
    batch, channels, paths = x1.shape[0], sig1.mul, len(module.spec.paths)
    rows = batch * channels
    a = x1.index_select(1, to1).reshape(rows, -1)
    if module.spec.mode == "uuu":
        b = (x2.index_select(1, to2).reshape(rows, -1), f2, 1)
    else:
        b = (x2.reshape(batch, -1), f2, channels)
    # path weights: [(Z,) P, U] (uvu blocks are [U, 1]) -> rows (z, u) x paths
    w = weight.reshape(weight.shape[:-1] + (paths, channels)).transpose(-1, -2).reshape(-1, paths)
    out = trilinear([(a, f1, 1), b, (w, fw, 1)], f_out, rows)
    return out.reshape(batch, -1).index_select(1, back)
