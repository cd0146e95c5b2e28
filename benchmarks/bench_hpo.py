"""HPO efficiency, grid vs random vs TPE: `hpsweep bench-hpo --help`.

Kept as a script for `python benchmarks/bench_hpo.py`; the code lives in
hpsweep.bench.hpo so `hpsweep bench-hpo` runs the same thing.
"""

import sys

from hpsweep.bench.hpo import main

if __name__ == "__main__":
    sys.exit(main())
