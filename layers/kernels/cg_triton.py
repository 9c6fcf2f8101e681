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
    if module._channelwise is None:
        return (
            "the fused cg kernel needs one multiplicity per operand (mul_in2 = 1 for uvu), a weight on every "
            "path and per-path weight blocks of one channel vector"
        )
    return None


def _plan(module):
    """Factors (float64) and channel gathers, built once per module from its nonzero coupling slices.

    The reference already enumerates the slices (``CGTensorProduct._plan_channelwise``: gathers
    ``slice_in1``, ``slice_in2``, ``slice_weight`` and the rows ``slice_out``); here the gathers
    become one-hot factor matrices.
    """
    plan = module.__dict__.get("_fused_plan")
    if plan is not None:
        return plan
    spec = module.spec
    sig1, sig2, sig_out = (ChannelSignal.of(i) for i in (spec.irreps_in1, spec.irreps_in2, spec.irreps_out))
    rank = module.slice_in1.numel()

    def one_hot(indices: torch.Tensor, size: int) -> torch.Tensor:
        factor = torch.zeros(size, rank, dtype=torch.float64)
        factor[indices.cpu(), torch.arange(rank)] = 1.0
        return factor

    plan = {
        "signals": (sig1, sig2, sig_out),
        "factors": (
            one_hot(module.slice_in1, sig1.base.dim),
            one_hot(module.slice_in2, sig2.base.dim),
            one_hot(module.slice_weight, len(spec.paths)),
            module.master("slice_out").T.contiguous(),
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
