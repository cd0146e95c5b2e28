#!/usr/bin/env bash
# The GPU check for "many trials per device", in one run of under 8 minutes on a GPU
# machine: the quick study trained on cuda (two GPU jobs at once through the GPU slots),
# the pack benchmark with 1, 4 and 16 members, the quick study's sweep stage with and
# without packs, and `hpsweep bench`.
#
#   make setup && make data         # once: the project and the prepared Fashion-MNIST
#   bash benchmarks/gpu_check.sh    # prints everything; copies under $OUT (default
#                                   # results/gpu_check)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${OUT:-results/gpu_check}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.txt") 2>&1

nvidia-smi --query-gpu=index,name,memory.total --format=csv
"$BIN/python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
                                      "devices", torch.cuda.device_count())'

echo "== the quick study on cuda (its own results folder) =="
sed -e 's/^device = .*/device = "cuda"/' -e 's#^results_dir = .*#results_dir = "results/quick-cuda"#' \
    -e 's#^reports_dir = .*#reports_dir = "reports/quick-cuda"#' studies/quick.toml \
    > "$OUT/quick-cuda.toml"
time "$BIN/snakemake" --cores 4 --resources gpu=2 --config "params=$OUT/quick-cuda.toml" -q
grep -h "gpu slot" results/quick-cuda/logs/train/*.log | sort | uniq -c | head

echo "== packs: N members vs N runs one after another =="
for n in 1 4 16; do
  "$BIN/hpsweep" bench --pack --device cuda --members "$n" --batch 64 256 --steps 200
done

echo "== the quick study's sweep stage on cuda: one job per run vs packs of 8 =="
"$BIN/hpsweep" bench --pack-study --params "$OUT/quick-cuda.toml" --pack-size 8 --cores 4

echo "== hpsweep bench (the seed-style loop vs the fast path) =="
"$BIN/hpsweep" bench --repeats 3
