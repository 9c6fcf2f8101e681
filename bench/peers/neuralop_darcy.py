"""The peer side of ``bench/operators.py``: neuraloperator 2.0.0's FNO trained on its own Darcy-16 recipe.

Runs under ``.venv-neuralop/bin/python`` (torch + ``neuraloperator==2.0.0``), never under equizoo's
environment; it imports only torch, neuralop and the standard library.

The recipe (``RECIPE`` below) is neuraloperator's example ``examples/models/plot_FNO_darcy.py``
(repository neuraloperator/neuraloperator, commit 9933918e6d4b), with the data pipeline of the
installed package (``neuralop/data/datasets/darcy.py`` ``load_darcy_flow_small`` and
``pt_dataset.py`` ``PTDataset``) and the loop of ``neuralop/training/trainer.py``
(``Trainer.train_one_epoch`` / ``train_one_batch`` / ``eval_one_batch``):

* data: the 1000 ``darcy_train_16`` samples; ``x`` (a bool mask) as float32 and not normalised
  (``encode_input=False``); ``y`` normalised channel-wise (``encode_output=True``,
  ``UnitGaussianNormalizer(dim=[0, 2, 3])``: mean and Bessel-corrected std over samples and space, plus
  ``eps = 1e-7``) through ``DefaultDataProcessor``;
* batches of 64 in file order (``load_darcy_flow_small`` builds its ``DataLoader`` without
  ``shuffle``), 16 optimizer steps per epoch;
* ``FNO(n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=24,
  projection_channel_ratio=2)`` and every other argument at its default (4 layers, lifting ratio 2,
  ``positional_embedding="grid"`` with coordinates ``j / N``, channel MLP of expansion 0.5 with a
  soft-gating skip, linear FNO skip, GELU, no normalisation layer, no domain padding);
* ``neuralop.training.AdamW(lr=1e-2, weight_decay=1e-4)`` (its defaults: betas (0.9, 0.999),
  ``eps=1e-6`` added to ``sqrt(v)``, bias correction folded into the step size, decoupled weight decay
  applied after the update, complex parameters with one second moment ``|g|^2`` per entry) and
  ``CosineAnnealingLR(T_max=30)`` stepped once per epoch;
* training loss ``H1Loss(d=2)`` (periodic central differences, ``reduction="sum"`` over the batch) on
  the normalised output and target; evaluation ``LpLoss(d=2, p=2)`` and ``H1Loss(d=2)`` on the
  de-normalised prediction against the raw target, averaged over the samples.

The example trains 15 epochs; the bench trains ``--epochs`` (100 by default), everything else as
above. Writes ``OUT/neuralop_fno.json`` (parameters, seconds per epoch, training curve, neuralop's own
test metrics, the recipe, versions) and ``OUT/neuralop_fno_predictions.pt`` (plain tensors:
``pred_16 [50, 1, 16, 16]`` and ``pred_32 [50, 1, 32, 32]``, physical units, and neuralop's own
per-sample ``neuralop_{l2,h1}_{16,32}_per_sample [50]``), so that
``bench/operators.py`` scores these predictions with the same functions as ours.

    .venv-neuralop/bin/python bench/peers/neuralop_darcy.py --epochs 100 --threads 1 --out /tmp/peer
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch

RECIPE = {
    "source": "neuraloperator/neuraloperator examples/models/plot_FNO_darcy.py @ 9933918e6d4b "
              "(+ installed neuralop 2.0.0: data/datasets/darcy.py load_darcy_flow_small, pt_dataset.py, "
              "training/trainer.py)",
    "n_train": 1000,
    "batch_size": 64,
    "shuffle": False,
    "model": {"n_modes": [8, 8], "in_channels": 1, "out_channels": 1, "hidden_channels": 24,
              "projection_channel_ratio": 2, "lifting_channel_ratio": 2, "n_layers": 4,
              "positional_embedding": "grid (x_j = j/N)", "channel_mlp_expansion": 0.5,
              "channel_mlp_skip": "soft-gating", "fno_skip": "linear", "domain_padding": None, "norm": None},
    "optimizer": {"name": "neuralop.training.AdamW", "lr": 1e-2, "weight_decay": 1e-4, "betas": [0.9, 0.999],
                  "eps": 1e-6},
    "scheduler": {"name": "CosineAnnealingLR", "T_max": 30, "step": "per epoch"},
    "train_loss": "H1Loss(d=2), reduction sum over the batch, on normalised output and target",
    "eval_losses": "LpLoss(d=2, p=2), H1Loss(d=2) on de-normalised prediction vs raw target, mean over samples",
    "normalisation": "input: none (encode_input=False); output: channel-wise UnitGaussianNormalizer "
                     "(mean, unbiased std + 1e-7)",
    "example_epochs": 15,
}

DEFAULT_DATA = Path(os.environ.get("EQUIZOO_NEURALOPERATOR_DATA", "~/.cache/equizoo/neuraloperator")).expanduser()


def load(path: Path, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [n, 1, N, N]`` float32 and ``y [n, 1, N, N]`` float32 from a neuraloperator ``.pt`` file."""
    data = torch.load(path, weights_only=True)
    x = data["x"].to(torch.float32).unsqueeze(1)
    y = data["y"].to(torch.float32).unsqueeze(1)
    if n is not None:
        x, y = x[:n], y[:n]
    return x.contiguous(), y.contiguous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=RECIPE["n_train"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with darcy_{train,test}_*.pt")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    import neuralop
    from neuralop import H1Loss, LpLoss
    from neuralop.data.transforms.data_processors import DefaultDataProcessor
    from neuralop.data.transforms.normalizers import UnitGaussianNormalizer
    from neuralop.models import FNO
    from neuralop.training import AdamW
    from neuralop.utils import count_model_params

    x_train, y_train = load(args.data / "darcy_train_16.pt", args.n_train)
    tests = {n: load(args.data / f"darcy_test_{n}.pt") for n in (16, 32)}

    output_encoder = UnitGaussianNormalizer(dim=[0, 2, 3])
    output_encoder.fit(y_train)
    processor = DefaultDataProcessor(in_normalizer=None, out_normalizer=output_encoder)

    torch.manual_seed(args.seed)
    spec = RECIPE["model"]
    model = FNO(n_modes=tuple(spec["n_modes"]), in_channels=1, out_channels=1,
                hidden_channels=spec["hidden_channels"], projection_channel_ratio=spec["projection_channel_ratio"])
    optimizer = AdamW(model.parameters(), lr=RECIPE["optimizer"]["lr"],
                      weight_decay=RECIPE["optimizer"]["weight_decay"])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=RECIPE["scheduler"]["T_max"])
    h1loss, l2loss = H1Loss(d=2), LpLoss(d=2, p=2)

    batch = RECIPE["batch_size"]
    epoch_seconds, train_loss = [], []
    for _epoch in range(args.epochs):
        model.train()
        processor.train()
        start = time.perf_counter()
        total = 0.0
        for i in range(0, len(x_train), batch):
            optimizer.zero_grad(set_to_none=True)
            sample = processor.preprocess({"x": x_train[i:i + batch], "y": y_train[i:i + batch]})
            out, sample = processor.postprocess(model(sample["x"]), sample)
            loss = h1loss(out, sample["y"])
            loss.backward()
            optimizer.step()
            total += loss.item()
        scheduler.step()
        epoch_seconds.append(time.perf_counter() - start)
        train_loss.append(total / len(x_train))
        if not math.isfinite(train_loss[-1]):
            raise SystemExit(f"training diverged at epoch {_epoch}: loss {train_loss[-1]}")

    model.eval()
    processor.eval()
    predictions, metrics = {}, {}
    with torch.no_grad():
        for n, (x, y) in tests.items():
            sample = processor.preprocess({"x": x.clone(), "y": y.clone()})
            out, sample = processor.postprocess(model(sample["x"]), sample)
            predictions[f"pred_{n}"] = out.detach().clone().contiguous()
            metrics[f"l2_{n}"] = l2loss(out, sample["y"]).item() / len(x)
            metrics[f"h1_{n}"] = h1loss(out, sample["y"]).item() / len(x)
            # neuralop's per-sample values, to check bench/operators.py's metric functions against
            for name, loss in (("l2", l2loss), ("h1", h1loss)):
                predictions[f"neuralop_{name}_{n}_per_sample"] = torch.stack(
                    [loss(out[i:i + 1], sample["y"][i:i + 1]) for i in range(len(x))])

    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(predictions, args.out / "neuralop_fno_predictions.pt")
    result = {
        "model": "neuraloperator FNO",
        "parameters_real": count_model_params(model),  # neuralop's count: a complex entry counts 2
        "parameter_tensors_numel": sum(p.numel() for p in model.parameters()),
        "seconds_per_epoch_median": statistics.median(epoch_seconds),
        "epoch_seconds": epoch_seconds,
        "train_loss_per_sample": train_loss,
        "epochs": args.epochs,
        "threads": args.threads,
        "seed": args.seed,
        "n_train": len(x_train),
        "n_test": {str(n): len(x) for n, (x, _) in tests.items()},
        "neuralop_metrics": metrics,
        "output_normaliser": {"mean": output_encoder.mean.flatten().tolist(),
                              "std": output_encoder.std.flatten().tolist(), "eps": output_encoder.eps},
        "recipe": RECIPE,
        "versions": {"neuralop": neuralop.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
    }
    (args.out / "neuralop_fno.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("parameters_real", "seconds_per_epoch_median", "neuralop_metrics")}))


if __name__ == "__main__":
    main()
