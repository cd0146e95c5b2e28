"""Training speed, ours vs. the seed-style loop, side by side: `hpsweep bench --help`.

Kept as a script for `python benchmarks/bench_train.py --quick`; the code lives
in hpsweep.bench.throughput so `hpsweep bench` runs the same thing.
"""

import sys

from hpsweep.bench.throughput import main

if __name__ == "__main__":
    sys.exit(main())
