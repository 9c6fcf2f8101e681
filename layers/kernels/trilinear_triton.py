r"""The one fused kernel behind every method: a factored trilinear map, row by row.

.. math:: \mathrm{out}[m] = F_o \big( (F_1^\top a[m]) \odot (F_2^\top b[m]) \odot (F_3^\top c[m]) \big)

with factor matrices :math:`F_t \in \mathbb{R}^{D_t \times R}` and :math:`F_o \in \mathbb{R}^{D_o \times R}`
(the third operand is optional). Each method is this map with its own factors:

* ``cp``: the CP factors themselves (TDN);
* ``grid``: :math:`F_t[(l,m), q] = Y_{lm}(r_q)` on the quadrature grid and
  :math:`F_o[(l,m), q] = w_q Y_{lm}(r_q)` -- a quadrature *is* an exact CP decomposition of the
  Gaunt tensor, of rank = number of grid points;
* ``gaunt``: the same with the uniform torus grid the FFTs diagonalise and the exact projection
  of step 3 of :mod:`layers.tensor_product.gaunt` (real matrices);
* ``cg`` (channelwise modes): an exact decomposition of every path's Clebsch-Gordan block with the
  path weights as third operand, :math:`(F_3^\top w)_r = w_{path(r)}`.

The map is linear in each operand, and its gradient with respect to one operand is the same map
with that operand's role taken by the output gradient:
:math:`\partial/\partial a = F_1 ((F_o^\top g) \odot (F_2^\top b) \odot (F_3^\top c))`. The autograd
function below calls itself in ``backward``, so gradients of any order stay fused.

Operand rows may be shared: operand ``t`` of ``n_t`` rows serves output row ``m`` with its row
``(m // g_t) % n_t`` (``g_t > 1``: one row for a block of consecutive rows, e.g. an edge's
spherical harmonics for all its channels; ``n_t`` smaller than the output: a weight row reused
periodically, e.g. shared weights per channel). Gradients of shared operands are summed.

Written in Triton (no library offers this fused form for arbitrary factors); float32 uses
``tl.dot`` with IEEE precision (no TF32), float64 multiplies and sums explicitly. Checked against
the references under ``TRITON_INTERPRET=1`` on CPU.
"""

from __future__ import annotations

from typing import Sequence

import torch
import triton
import triton.language as tl

BLOCK_M_FP32, BLOCK_R_FP32 = 32, 32
BLOCK_M_FP64, BLOCK_R_FP64 = 16, 16


@triton.jit
def _matmul(x, y, FP64: tl.constexpr):
    """``x [M, K] @ y [K, N]`` in the input precision."""
    if FP64:
        return tl.sum(x[:, :, None] * y[None, :, :], axis=1)
    else:
        return tl.dot(x, y, input_precision="ieee")


@triton.jit
def _load_rows(ptr, rows, group, count, width, BLOCK_D: tl.constexpr):
    """``[BLOCK_M, BLOCK_D]`` tile of operand rows ``(rows // group) % count``, zero-padded."""
    columns = tl.arange(0, BLOCK_D)
    source = ((rows // group) % count).to(tl.int64)  # int64 offsets: rows x width can pass 2^31
    mask = (rows[:, None] >= 0) & (columns[None, :] < width)
    return tl.load(ptr + source[:, None] * width + columns[None, :], mask=mask, other=0.0)


@triton.jit
def _load_factor(ptr, rank_offsets, rank, width, BLOCK_D: tl.constexpr):
    """``[BLOCK_D, BLOCK_R]`` slice ``F[:, r0:r0+BLOCK_R]`` of a ``[width, rank]`` factor, zero-padded."""
    columns = tl.arange(0, BLOCK_D)
    mask = (columns[:, None] < width) & (rank_offsets[None, :] < rank)
    return tl.load(ptr + columns[:, None] * rank + rank_offsets[None, :], mask=mask, other=0.0)


@triton.jit
def _trilinear_kernel(
    a_ptr, b_ptr, c_ptr, fa_ptr, fb_ptr, fc_ptr, fo_ptr, out_ptr,
    num_rows, rank,
    da, db, dc, do,
    group_a, group_b, group_c,
    count_a, count_b, count_c,
    HAS_C: tl.constexpr, FP64: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_R: tl.constexpr,
    BA: tl.constexpr, BB: tl.constexpr, BC: tl.constexpr, BO: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    live = rows < num_rows
    safe_rows = tl.where(live, rows, 0)
    a = _load_rows(a_ptr, safe_rows, group_a, count_a, da, BA)
    b = _load_rows(b_ptr, safe_rows, group_b, count_b, db, BB)
    if HAS_C:
        c = _load_rows(c_ptr, safe_rows, group_c, count_c, dc, BC)
    out_columns = tl.arange(0, BO)
    if FP64:
        acc = tl.zeros((BLOCK_M, BO), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK_M, BO), dtype=tl.float32)
    for r0 in range(0, rank, BLOCK_R):
        offsets = r0 + tl.arange(0, BLOCK_R)
        h = _matmul(a, _load_factor(fa_ptr, offsets, rank, da, BA), FP64)
        h = h * _matmul(b, _load_factor(fb_ptr, offsets, rank, db, BB), FP64)
        if HAS_C:
            h = h * _matmul(c, _load_factor(fc_ptr, offsets, rank, dc, BC), FP64)
        # F_o^T slice: [BLOCK_R, BO]
        mask = (offsets[:, None] < rank) & (out_columns[None, :] < do)
        fo = tl.load(fo_ptr + out_columns[None, :] * rank + offsets[:, None], mask=mask, other=0.0)
        acc += _matmul(h, fo, FP64)
    mask = live[:, None] & (out_columns[None, :] < do)
    tl.store(out_ptr + rows.to(tl.int64)[:, None] * do + out_columns[None, :], acc, mask=mask)


def _block(width: int) -> int:
    return max(16, triton.next_power_of_2(width))


def _launch(num_rows: int, operands, out_factor: torch.Tensor) -> torch.Tensor:
    (a, fa, ga), (b, fb, gb) = operands[0], operands[1]
    has_c = len(operands) == 3
    c, fc, gc = operands[2] if has_c else (a, fa, ga)  # placeholders, unused without HAS_C
    rank = out_factor.shape[1]
    out = a.new_empty(num_rows, out_factor.shape[0])
    fp64 = a.dtype == torch.float64
    block_m, block_r = (BLOCK_M_FP64, BLOCK_R_FP64) if fp64 else (BLOCK_M_FP32, BLOCK_R_FP32)
    if num_rows == 0:
        return out
    grid = (triton.cdiv(num_rows, block_m),)
    _trilinear_kernel[grid](
        a, b, c, fa, fb, fc, out_factor, out,
        num_rows, rank,
        a.shape[1], b.shape[1], c.shape[1], out_factor.shape[0],
        ga, gb, gc,
        a.shape[0], b.shape[0], c.shape[0],
        HAS_C=has_c, FP64=fp64,
        BLOCK_M=block_m, BLOCK_R=block_r,
        BA=_block(a.shape[1]), BB=_block(b.shape[1]), BC=_block(c.shape[1]), BO=_block(out_factor.shape[0]),
    )
    return out


class _Trilinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, num_rows, groups, factors, out_factor, *tensors):
        operands = [(t.contiguous(), f.contiguous(), g) for t, f, g in zip(tensors, factors, groups)]
        ctx.save_for_backward(*tensors)
        ctx.num_rows, ctx.groups, ctx.factors, ctx.out_factor = num_rows, groups, factors, out_factor
        return _launch(num_rows, operands, out_factor.contiguous())

    @staticmethod
    def backward(ctx, grad):
        tensors = ctx.saved_tensors
        grads = []
        for t, tensor in enumerate(tensors):
            if not ctx.needs_input_grad[4 + t]:
                grads.append(None)
                continue
            others = [(grad, ctx.out_factor, 1)] + [
                (tensors[s], ctx.factors[s], ctx.groups[s]) for s in range(len(tensors)) if s != t
            ]
            full = trilinear(others, ctx.factors[t], ctx.num_rows)  # [num_rows, D_t]
            count, group = tensor.shape[0], ctx.groups[t]
            grads.append(full.view(-1, count, group, tensor.shape[1]).sum(dim=(0, 2)))
        return (None, None, None, None, *grads)


def trilinear(operands: Sequence[tuple[torch.Tensor, torch.Tensor, int]], out_factor: torch.Tensor, num_rows: int) -> torch.Tensor:
    """``[num_rows, D_o]``: the map of the module docstring.

    Args:
        operands: two or three ``(rows [n_t, D_t], factor [D_t, R], group g_t)``; operand ``t``
            serves output row ``m`` with its row ``(m // g_t) % n_t``. ``num_rows`` must be a
            multiple of ``n_t * g_t``.
        out_factor: ``[D_o, R]``.
    """
    if len(operands) not in (2, 3):
        raise ValueError("trilinear takes two or three operands")
    for rows, factor, group in operands:
        if rows.shape[1] != factor.shape[0] or factor.shape[1] != out_factor.shape[1]:
            raise ValueError(f"operand {tuple(rows.shape)} and factor {tuple(factor.shape)} do not fit rank {out_factor.shape[1]}")
        if num_rows % (rows.shape[0] * group):
            raise ValueError(f"{num_rows} output rows are not a multiple of {rows.shape[0]} rows x group {group}")
    tensors = [rows for rows, _, _ in operands]
    factors = tuple(factor.to(tensors[0].dtype) for _, factor, _ in operands)
    groups = tuple(int(group) for _, _, group in operands)
    return _Trilinear.apply(num_rows, groups, factors, out_factor.to(tensors[0].dtype), *tensors)
