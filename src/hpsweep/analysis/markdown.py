"""Markdown building blocks of the report: number formats, tables, figure links."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any


def finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def pct(x: Any, digits: int = 2) -> str:
    return f"{100 * float(x):.{digits}f} %" if finite(x) else "–"


def num(x: Any, digits: int = 1) -> str:
    if not finite(x):
        return "–"
    x = float(x)
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.{digits}f}"


def duration(seconds: Any) -> str:
    if not finite(seconds):
        return "–"
    s = float(seconds)
    if s < 10:
        return f"{s:.2f} s"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def t_975(n: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1)) if n > 1 else math.nan


def _esc(cell: Any) -> str:
    return str(cell).replace("|", "\\|").replace("\n", " ")


def md_table(headers: list[str], rows: list[list[Any]], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table; `align` is one of l/r/c per column."""
    from tabulate import tabulate

    align = align or "l" + "r" * (len(headers) - 1)
    names = {"l": "left", "r": "right", "c": "center"}
    return tabulate([[_esc(c) for c in r] for r in rows], [_esc(h) for h in headers],
                    tablefmt="pipe", colalign=[names[a] for a in align],
                    disable_numparse=True)


class Doc:
    def __init__(self, out: Path):
        self.out = out
        self.parts: list[str] = []

    def add(self, *blocks: str) -> None:
        self.parts.extend(b.rstrip("\n") for b in blocks if b is not None)

    def fig(self, path: Path, alt: str) -> None:
        if Path(path).is_file():
            rel = os.path.relpath(path, self.out.parent).replace(os.sep, "/")
            self.add(f"![{alt}]({rel})")

    def text(self) -> str:
        return "\n\n".join(self.parts) + "\n"
