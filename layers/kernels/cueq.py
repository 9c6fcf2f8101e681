"""The ``cueq`` kernel of the Clebsch-Gordan product: our spec run by NVIDIA cuEquivariance.

The spec is written as one cuEquivariance ``SegmentedTensorProduct`` with operands
``[weights, x1, x2, out]``: one weight segment per path (``uvw``: ``[U, V, W]``, ``uvu``: ``[U, V]``,
``uuu``: ``[U]``, row-major as in e3nn), one segment per irrep block of each feature, and one path
per Clebsch-Gordan path with coefficient ``normalisation * wigner_3j``. Features are transposed to
cuEquivariance's ``ir_mul`` layout and back, so weights and results are exactly those of
:class:`~layers.tensor_product.cg.CGTensorProduct`. On CUDA with ``cuequivariance-ops-torch``
(and ``platformdirs``) installed, the ``uniform_1d`` or ``fused_tp`` CUDA kernels run; elsewhere
cuEquivariance's reference path (used by the tests on CPU).
"""

from __future__ import annotations

import logging
import warnings

import torch

log = logging.getLogger("equizoo.tensor_product")

# subscripts in ir_mul layout: weights, x1 [i, u], x2 [j, v], out [k, w], coupling ijk
_SUBSCRIPTS = {
    "uvw": "uvw,iu,jv,kw+ijk",
    "uvu": "uv,iu,jv,ku+ijk",
    "uvv": "uv,iu,jv,kv+ijk",
    "uuw": "uw,iu,ju,kw+ijk",
    "uuu": "u,iu,ju,ku+ijk",
}


def _ir_mul_index(irreps) -> torch.Tensor:
    """Gather turning a mul_ir tensor into ir_mul: block [mul, d] -> [d, mul]."""
    columns = []
    for (mul, ir), block in zip(irreps, irreps.slices()):
        columns.append(torch.arange(block.start, block.stop).view(mul, ir.dim).T.reshape(-1))
    return torch.cat(columns) if columns else torch.zeros(0, dtype=torch.long)


class CueqExecutor:
    """Callable ``(x1, x2, weight) -> out`` for one :class:`CGTensorProduct`; built once per module."""

    def __init__(self, module) -> None:
        import cuequivariance as cue
        import cuequivariance_torch as cuet

        spec = module.spec
        modes = {p.mode for p in spec.paths}
        if len(modes) != 1 or any(p.weight is None for p in spec.paths):
            raise ValueError("the cueq kernel needs one connection mode and a weight on every path")
        mode = modes.pop()
        stp = cue.SegmentedTensorProduct.from_subscripts(_SUBSCRIPTS[mode])
        for mul, ir in spec.irreps_in1:
            stp.add_segment(1, (ir.dim, mul))
        for mul, ir in spec.irreps_in2:
            stp.add_segment(2, (ir.dim, mul))
        for mul, ir in spec.irreps_out:
            stp.add_segment(3, (ir.dim, mul))
        for n, path in enumerate(spec.paths):
            weight_segment = stp.add_segment(0, path.weight.shape)
            coupling = module.master(f"coupling_{n}").numpy()
            stp.add_path(weight_segment, path.i_in1, path.i_in2, path.i_out, c=coupling)
        self.polynomial = cue.SegmentedPolynomial.eval_last_operand(stp)
        self.modules: dict = {}
        self.cuet = cuet
        self.to_ir_mul1 = _ir_mul_index(spec.irreps_in1)
        self.to_ir_mul2 = _ir_mul_index(spec.irreps_in2)
        self.from_ir_mul = torch.argsort(_ir_mul_index(spec.irreps_out))

    def _on(self, device: torch.device):
        """cuEquivariance module and layout gathers for ``device``, built once per device."""
        key = (device.type, device.index)
        if key not in self.modules:
            methods = ("uniform_1d", "fused_tp") if device.type == "cuda" else ("naive",)
            module = None
            for method in methods:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # we say below which path runs
                    try:
                        module = self.cuet.SegmentedPolynomial(self.polynomial, method=method).to(device)
                        break
                    except (ValueError, NotImplementedError, RuntimeError):
                        continue
            if module is None:
                raise RuntimeError(f"cuEquivariance accepts none of {methods} for this product")
            if device.type == "cuda" and module.method == "naive":
                log.warning(
                    "equizoo: cuEquivariance's CUDA kernels are unavailable, its slow naive path runs; "
                    "install cuequivariance-ops-torch-cu13 and platformdirs"
                )
            self.modules[key] = (
                module,
                self.to_ir_mul1.to(device),
                self.to_ir_mul2.to(device),
                self.from_ir_mul.to(device),
            )
        return self.modules[key]

    def __call__(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        module, to_ir_mul1, to_ir_mul2, from_ir_mul = self._on(x1.device)
        weight = weight.reshape(-1, weight.shape[-1])
        [out] = module([weight, x1.index_select(1, to_ir_mul1), x2.index_select(1, to_ir_mul2)])
        return out.index_select(1, from_ir_mul)
