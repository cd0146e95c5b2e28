"""Optional MLflow tracking: a study's finished runs logged to an MLflow store.

One job logs every finished run after training (rule mlflow_export), instead of
each trainer logging live: parallel jobs writing one SQLite tracking database race
on its schema and locks, and the trainer stays free of tracking concerns. MLflow
is imported only here, only when `tracking.mlflow = true`.

Each hpsweep run becomes one MLflow run (name = its sweep/grid/config labels):
    params     the resolved config, flattened (model.width, train.lr, ...) and the seed
    metrics    per epoch (step = epoch): train/val loss and accuracy, lr, epoch time;
               final: best/final val accuracy, test accuracy (final seeds), time, params
    tags       hpsweep.run_id, hpsweep.signature, hpsweep.kind (run | final), status
    artifacts  config.json, metrics.json, confusion.csv, best.pt; the final seeds also
               get the report's figures
Logging is idempotent: a run whose signature is already in the experiment is
skipped, so a rerun after new sweep values logs only the new runs.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from hpsweep.core.dotted import flatten
from hpsweep.core.layout import export_dir, export_marker
from hpsweep.core.metric_names import EPOCH_METRICS
from hpsweep.core.params_deps import made_from
from hpsweep.core.study import Study

log = logging.getLogger(__name__)

FINAL_METRICS = ("best_val_acc", "best_val_loss", "final_val_acc", "final_val_loss",
                 "test_acc", "test_loss", "best_epoch", "epochs_run", "total_time_s",
                 "samples_per_s", "n_params", "peak_mem_mb")
ARTIFACTS = ("config.json", "metrics.json", "confusion.csv", "best.pt")


class TrackingError(RuntimeError):
    pass


def tracking_uri(study: Study) -> str:
    uri = study.params.tracking.mlflow_uri
    if uri:
        return uri
    return f"sqlite:///{(export_dir(study) / 'mlflow.db').resolve()}"


def _runs_to_log(study: Study) -> list[dict[str, Any]]:
    """Finished runs of the plan and the final seeds: dir, name, config, signature, kind."""
    from hpsweep.core.layout import seed_dir

    labels: dict[str, list[str]] = {}
    for m in study.plan.members:
        labels.setdefault(m.run_id, []).append(f"{m.name}:{m.label}" if m.group != "baseline"
                                               else "baseline")
    out = []
    for run_id, spec in sorted(study.plan.runs.items()):
        d = study.paths.run_dir(run_id)
        if (d / "metrics.json").is_file():
            out.append({"dir": d, "name": " | ".join(labels.get(run_id, [run_id])),
                        "signature": spec.signature, "run_id": run_id, "kind": "run",
                        "seed": spec.seed})
    if study.params.final.enabled:
        for seed in study.params.final.seeds:
            d = seed_dir(study, seed)
            cfg = d / "config.json"
            if (d / "metrics.json").is_file() and cfg.is_file():
                c = json.loads(cfg.read_text())
                sig = c.get("signature") or c.get("run_id") or f"final-{seed}"
                out.append({"dir": d, "name": f"final seed {seed}", "signature": sig,
                            "run_id": c.get("run_id", ""), "kind": "final", "seed": seed})
    return out


def _import_mlflow():
    try:
        import mlflow
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise TrackingError("tracking.mlflow = true needs MLflow: pip install mlflow-skinny "
                            "(or pip install -e '.[mlflow]'), or set tracking.mlflow = false"
                            ) from None
    return mlflow, MlflowClient, Metric, Param


def _experiment_id(client, name: str, artifact_root: Path | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = artifact_root.resolve().as_uri() if artifact_root else None
    return client.create_experiment(name, artifact_location=location)


def _logged_signatures(client, exp_id: str) -> set[str]:
    seen: set[str] = set()
    token = None
    while True:
        page = client.search_runs([exp_id], max_results=1000, page_token=token)
        seen.update(r.data.tags.get("hpsweep.signature", "") for r in page
                    if r.info.status == "FINISHED")
        token = page.token
        if not token:
            return seen


def _chunks(items: list, n: int):
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _log_one(client, Metric, Param, exp_id: str, run: dict[str, Any],  # noqa: N803
             figures: list[Path]) -> str:
    metrics = json.loads((run["dir"] / "metrics.json").read_text())
    config = metrics.get("provenance", {}).get("run_config") or {}
    tags = {"hpsweep.run_id": run["run_id"], "hpsweep.signature": run["signature"],
            "hpsweep.kind": run["kind"], "hpsweep.status": str(metrics.get("status")),
            "hpsweep.dir": str(run["dir"])}
    mrun = client.create_run(exp_id, run_name=run["name"], tags=tags)
    rid = mrun.info.run_id
    now = int(time.time() * 1000)
    # MLflow params are text: lists as JSON, like TensorBoard's hparams
    params = [Param(k, (json.dumps(v) if isinstance(v, list) else str(v))[:6000])
              for k, v in flatten(config).items()]
    params.append(Param("seed", str(run["seed"])))
    metric_rows = [Metric(k, float(row[k]), now, int(row["epoch"]))
                   for row in metrics.get("history", []) for k in EPOCH_METRICS
                   if isinstance(row.get(k), int | float)]
    metric_rows += [Metric(k, float(metrics[k]), now, 0) for k in FINAL_METRICS
                    if isinstance(metrics.get(k), int | float)]
    for chunk in _chunks(params, 100):  # MLflow's per-batch limits
        client.log_batch(rid, params=chunk)
    for chunk in _chunks(metric_rows, 1000):
        client.log_batch(rid, metrics=chunk)
    for name in ARTIFACTS:
        if (run["dir"] / name).is_file():
            client.log_artifact(rid, str(run["dir"] / name))
    for fig in figures if run["kind"] == "final" else []:
        client.log_artifact(rid, str(fig), artifact_path="figures")
    client.set_terminated(rid, status="FINISHED")
    return rid


def export_study(study: Study, marker: str | Path | None = None) -> dict[str, Any]:
    """Log the study's finished runs that MLflow does not have yet; write ``marker`` (the
    rule's output; default the layout's export_marker).

    With tracking.mlflow = false it logs nothing and never imports mlflow: `dvc repro`
    runs this stage whatever params.toml says (its command cannot depend on it)."""
    from hpsweep.core.atomic import write_text
    from hpsweep.core.layout import figure_paths

    marker = marker or export_marker(study)
    if not study.params.tracking.mlflow:
        log.info("mlflow: tracking.mlflow = false in %s; nothing logged", study.params_path)
        summary = {"mlflow": False, "logged": [], "already_there": []}
        write_text(marker, json.dumps(summary, indent=2))
        return summary
    _, MlflowClient, Metric, Param = _import_mlflow()  # noqa: N806
    uri = tracking_uri(study)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri)
    name = study.params.tracking.mlflow_experiment or study.params.study.name
    local = uri.startswith(("sqlite:", "file:")) or "://" not in uri
    exp_id = _experiment_id(client, name, export_dir(study) / "artifacts" if local else None)
    seen = _logged_signatures(client, exp_id)
    figures = [p for p in figure_paths(study).values() if p.is_file()]
    logged, skipped = [], []
    for run in _runs_to_log(study):
        if run["signature"] in seen:
            skipped.append(run["run_id"])
            continue
        _log_one(client, Metric, Param, exp_id, run, figures)
        seen.add(run["signature"])
        logged.append(run["run_id"])
        log.info("mlflow: logged %s (%s)", run["name"], run["dir"])
    summary = {"mlflow": True, "made_from": made_from(study.params, "mlflow_export"),
               "tracking_uri": uri, "experiment": name, "experiment_id": exp_id,
               "logged": logged, "already_there": skipped}
    write_text(marker, json.dumps(summary, indent=2))
    return summary
