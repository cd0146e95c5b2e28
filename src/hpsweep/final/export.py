"""The final model, exported: model.pt (state_dict, config, normalisation), model.pt2
(a torch.export program that needs no hpsweep) and model_card.json."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from hpsweep.core.atomic import atomic_path, write_text
from hpsweep.core.ids import code_version
from hpsweep.core.layout import seed_dir
from hpsweep.core.study import Study

MODEL_FORMAT = 1


def export_model(study: Study, row: dict[str, Any], config: dict[str, Any],
                  summary: dict[str, Any], out: Mapping[str, Path]) -> None:
    """model.pt, model.pt2 and model_card.json to ``out["model"|"program"|"card"]``, from
    the seed ``row`` of the final retrain."""
    ckpt_path = seed_dir(study, row["seed"]) / "best.pt"
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    blob = {"format": MODEL_FORMAT, "state_dict": ckpt["model"], "config": config,
            "model_cfg": config["model"], "input_shape": ckpt.get("input_shape"),
            "classes": ckpt.get("classes"), "mean": ckpt.get("mean"), "std": ckpt.get("std"),
            "seed": row["seed"], "val_acc": row["best_val_acc"], "test_acc": row["test_acc"],
            "test_acc_mean": summary["test_acc_mean"], "code_version": code_version()}
    with atomic_path(out["model"]) as tmp:
        torch.save(blob, tmp)
    model, _ = load_exported(out["model"])
    _export_program(model, blob, out["program"])
    metrics = json.loads((seed_dir(study, row["seed"]) / "metrics.json").read_text())
    prov = metrics.get("provenance", {})
    card = {
        "model": f"{study.params.study.name}: {config['model']['arch']}, "
                 f"{summary['n_params']:,} parameters",
        "dataset": prov.get("data_dataset"), "data_checksum": prov.get("data_checksum"),
        "classes": blob["classes"], "input": {
            "shape": ["N", *blob["input_shape"]], "dtype": "float32",
            "range": "pixels / 255 in [0, 1]; model.pt2 normalises inside",
            "mean": blob["mean"], "std": blob["std"]},
        "test_accuracy": {"mean": summary["test_acc_mean"], "ci95": summary["test_acc_ci95"],
                          "n_seeds": summary["n_seeds"],
                          "per_seed": {str(r["seed"]): r["test_acc"]
                                       for r in summary["per_seed"]},
                          "exported_seed": row["seed"],
                          "exported_seed_test_acc": row["test_acc"]},
        "trained_on": summary["trained_on"],
        "val_accuracy_of_exported_seed": None if summary["trained_on"] == "train+val"
        else row["best_val_acc"],
        "chosen_by": summary["best"].get("source"), "config": config,
        "code_version": code_version(), "torch": prov.get("torch"),
        "files": {"state_dict": out["model"].name, "program": out["program"].name},
    }
    write_text(out["card"], json.dumps(card, indent=2, default=str))


def _export_program(model: torch.nn.Module, blob: dict[str, Any], path: Path) -> None:
    """model.pt2: a torch.export program with the normalisation built in, any batch size."""

    class Normalised(torch.nn.Module):
        def __init__(self, net: torch.nn.Module, mean: list[float], std: list[float]):
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net((x - self.mean) / self.std)

    wrapped = Normalised(model, blob["mean"], blob["std"]).eval()
    example = torch.rand(2, *blob["input_shape"])
    program = torch.export.export(
        wrapped, (example,), dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}})
    with atomic_path(path) as tmp:
        torch.export.save(program, tmp)


def load_exported(path: str | Path):
    """(model in eval mode, blob) from an exported model.pt. Inputs as in training:
    uint8 pixels / 255, minus blob["mean"], divided by blob["std"] (per channel)."""
    from hpsweep.training.models import build_model

    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    model = build_model(blob["model_cfg"], tuple(blob["input_shape"]), len(blob["classes"]))
    model.load_state_dict(blob["state_dict"])
    return model.eval(), blob
