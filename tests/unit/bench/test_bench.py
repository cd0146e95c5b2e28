"""hpsweep bench: the printed comparison (not its figures, which are machine-dependent)."""

from __future__ import annotations

import re

from tunefixtures import synthetic_tensors

from hpsweep.bench.throughput import main, time_to_accuracy
from hpsweep.data.prepared import PreparedData, tensor_checksum


def test_quick_bench_prints_the_speedup_line(capsys):
    assert main(["--synthetic", "--quick", "--models", "mlp", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^speedup mlp=\d+\.\dx", out, re.M), out
    assert "(a) seed-style" in out and "(b) hpsweep fast path" in out
    assert "time-to-accuracy: skipped" in out


def test_repeats_print_the_median_and_spread_of_the_speedup(capsys):
    assert main(["--synthetic", "--n", "512", "--models", "mlp", "--threads", "1",
                 "--repeats", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("(a) seed-style") == 3 and "repeat 3 of 3" in out
    m = re.search(r"^speedup mlp=(\d+\.\d)x \((\d+\.\d)-(\d+\.\d)\)", out, re.M)
    assert m, out
    median, low, high = map(float, m.groups())
    assert low <= median <= high and "median of 3 repeat(s), min-max" in out


def test_time_to_accuracy_reports_both_loops(tmp_path):
    t = synthetic_tensors(512)
    data = PreparedData(**t, classes=list("abcd"), dataset="synthetic",
                        checksum=tensor_checksum(t))
    seed_hit, fast_hit = time_to_accuracy(data, 0.6, 8, tmp_path)
    assert seed_hit and fast_hit
    for seconds, epochs in (seed_hit, fast_hit):
        assert seconds > 0 and 1 <= epochs <= 8
    # an unreachable target is reported as not reached, not as a time
    assert time_to_accuracy(data, 1.01, 2, tmp_path) == (None, None)
