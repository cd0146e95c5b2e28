"""Optuna's own matplotlib figures of a study, saved as PNGs (headless).

Every name in ``figure_names`` is always written: where Optuna cannot draw a
figure (too few finished trials, a one-parameter space has no contour, ...) a
placeholder saying why is saved instead, so a declared Snakemake output exists.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsweep.core.atomic import atomic_path
from hpsweep.core.layout import optuna_figure_names as figure_names

log = logging.getLogger(__name__)

TARGET_NAME = "validation accuracy"


def _accuracy(t: FrozenTrial) -> float:
    return t.values[0]


def top_params(ostudy: optuna.Study, k: int, multi_objective: bool) -> list[str]:
    """The ``k`` most important parameters (PED-ANOVA), falling back to the space order."""
    keys: list[str] = []
    for t in ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        keys += [p for p in t.params if p not in keys]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(
                ostudy, target=_accuracy if multi_objective else None)
        ranked = list(imp) + [p for p in keys if p not in imp]
    except Exception:  # too few trials for an importance estimate
        ranked = keys
    return ranked[:k]


def _pyplot():
    """matplotlib.pyplot on the headless backend, imported only when drawing (it costs
    a second at import, and the Snakefile imports this package)."""
    import matplotlib

    matplotlib.use("Agg")
    # categorical axes of numeric choices (width 256/512) log one INFO line per plot
    logging.getLogger("matplotlib.category").setLevel(logging.WARNING)
    import matplotlib.pyplot as plt

    return plt


def _placeholder(path: Path, name: str, why: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, f"optuna {name}: not available\n{why}", ha="center", va="center",
            wrap=True)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)


def write_figures(ostudy: optuna.Study, paths: Mapping[str, str | Path],
                  multi_objective: bool = False) -> dict[str, str]:
    """Write every figure of ``figure_names`` to ``paths[name]``; returns name -> "ok" or
    the reason it is a placeholder."""
    import numpy as np

    plt = _pyplot()
    from optuna.visualization import matplotlib as ovm

    target = _accuracy if multi_objective else None
    tkw = {"target": target, "target_name": TARGET_NAME}
    top = top_params(ostudy, 4, multi_objective)
    plots: dict[str, Callable[[], object]] = {
        "history": lambda: ovm.plot_optimization_history(ostudy, **tkw),
        "intermediate": lambda: ovm.plot_intermediate_values(ostudy),
        "importance": lambda: ovm.plot_param_importances(ostudy, **tkw),
        "parallel": lambda: ovm.plot_parallel_coordinate(ostudy, params=top or None, **tkw),
        "slice": lambda: ovm.plot_slice(ostudy, params=top or None, **tkw),
        "contour": lambda: ovm.plot_contour(ostudy, params=top[:2], **tkw),
        "pareto": lambda: ovm.plot_pareto_front(
            ostudy, target_names=[TARGET_NAME, "parameters"]),
    }
    n_done = len(ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    result = {}
    for name in figure_names(multi_objective):
        path = Path(paths[name])
        why = ""
        if n_done < 2 and name not in ("history", "intermediate", "pareto"):
            why = f"needs >= 2 completed trials, the study has {n_done}"
        elif name == "contour" and len(top) < 2:
            why = "needs >= 2 searched parameters"
        if not why:
            plt.close("all")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ax = plots[name]()
                fig = np.ravel(ax)[0].figure
                if name == "slice":
                    fig.set_size_inches(3.2 * max(1, len(top)), 3.4)
                elif name == "contour":
                    fig.set_size_inches(6, 5)
                _save(fig, path)
                result[name] = "ok"
                continue
            except Exception as e:  # Optuna refuses (e.g. all-constant values): say why
                why = f"{type(e).__name__}: {e}"
        log.info("optuna_%s.png: placeholder (%s)", name, why)
        _placeholder(path, name, why)
        result[name] = why
    return result
