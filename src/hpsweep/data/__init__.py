"""The dataset stage: fetch verified raw files, then prepare one fixed split.

    fetch(dataset, raw_dir, mirrors, urls)  -> raw_dir/<dataset>/  (verified, idempotent)
    prepare(data_cfg, raw_dir, out_path)    -> out_path (+ .manifest.json), returns the manifest

Modules, one job each:
    sources.py   what each dataset is: files, checksums, official URLs, class names
    download.py  getting bytes onto disk safely: mirrors, HTTP retries, atomic install, zips
    idx.py       strict IDX reader (MNIST, Fashion-MNIST)
    formats.py   CSV and Tiny ImageNet readers
    split.py     stratified split, subset and k folds: every split hpsweep draws
    prepare.py   raw files -> the prepared file (fixed split) and its manifest
    prepared.py  the prepared-file format every training run reads
"""

from __future__ import annotations


class DataError(Exception):
    """A dataset problem a user can fix; its text is one line: the problem, then the fix.

    Callers (CLI, Snakemake scripts) print ``str(err)`` instead of a traceback.
    """

    def __init__(self, message: str):
        # One line, whatever the parts it was assembled from contained.
        super().__init__(" ".join(str(message).splitlines()))


# Imported after DataError: the submodules import it from here.
from hpsweep.data.download import fetch  # noqa: E402
from hpsweep.data.prepare import manifest_path, prepare  # noqa: E402
from hpsweep.data.prepared import PreparedData, load_prepared, save_prepared  # noqa: E402
from hpsweep.data.sources import DATASETS, DatasetSpec, IdxFile, get_spec  # noqa: E402
from hpsweep.data.split import stratified_split, stratified_subset  # noqa: E402

__all__ = [
    "DATASETS",
    "DataError",
    "DatasetSpec",
    "IdxFile",
    "PreparedData",
    "fetch",
    "get_spec",
    "load_prepared",
    "manifest_path",
    "prepare",
    "save_prepared",
    "stratified_split",
    "stratified_subset",
]
