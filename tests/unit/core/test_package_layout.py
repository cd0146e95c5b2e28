"""The package reads like the DAG: imports run one way, core is torch-free, no two
modules share a name (hpsweep/__init__.py draws the map)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

import hpsweep

PACKAGE = Path(hpsweep.__file__).parent
# A module may import its own folder and the folders of lower layers only.
LAYER = {"core": 0, "data": 1, "training": 2, "tuning": 3, "final": 3, "analysis": 4,
         "ops": 5, "bench": 5, "cli": 6}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


def hpsweep_imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            out.append(f"relative import in {path.name}")  # absolute only: moves stay greppable
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hpsweep."):
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("hpsweep.")]
    return out


def test_every_folder_is_a_known_layer():
    tops = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in modules()}
    assert tops == set(LAYER)


def test_imports_run_one_way():
    wrong = []
    for path in modules():
        me = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for mod in hpsweep_imports(path):
            other = mod.split(".")[1] if mod.startswith("hpsweep.") else None
            if other is None or LAYER[other] > LAYER[me] or (LAYER[other] == LAYER[me]
                                                             and other != me):
                wrong.append(f"{path.relative_to(PACKAGE)} imports {mod}")
    assert not wrong, "\n".join(wrong)


def test_no_two_modules_share_a_name():
    names = Counter(p.stem for p in modules())
    assert not [n for n, c in names.items() if c > 1]


def test_the_core_and_what_the_snakefile_reads_import_no_torch():
    code = ("import sys, importlib; [importlib.import_module(m) for m in sys.argv[1:]]; "
            "print(sorted({'torch', 'pandas', 'optuna', 'scipy'} & set(sys.modules)))")
    core = [f"hpsweep.core.{p.stem}" for p in (PACKAGE / "core").glob("*.py")
            if p.stem != "__init__"]
    out = subprocess.run([sys.executable, "-c", code, *core, "hpsweep.ops.jobs",
                          "hpsweep.training.runstore", "hpsweep.ops.status"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
