#!/usr/bin/env bash
# Snakemake runs this once, inside the freshly created conda env (hpsweep.yaml), from the
# workflow's working directory: install this checkout of hpsweep and its dependencies.
set -euo pipefail
if ! grep -qs '^name = "hpsweep"' pyproject.toml; then
    echo "hpsweep.post-deploy.sh: no hpsweep pyproject.toml in $PWD; run snakemake from the project root" >&2
    exit 1
fi
python -m pip install --quiet -e .
