"""bench --pack: a packed member computes what the member computes alone (fp32), so the
benchmark times the same work on both sides."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hpsweep.bench.pack import StackedMLP, _models

CFG = {"arch": "mlp", "depth": 2, "width": 32, "activation": "silu", "batch_norm": True,
       "dropout": 0.0}


def test_stacked_members_match_their_models_forward_and_gradients():
    models = _models(CFG, 3, (1, 8, 8), 4)
    net = StackedMLP(models).train()
    x = torch.randn(3, 16, 1, 8, 8)
    y = torch.randint(0, 4, (3, 16))
    out = net(x)
    loss = F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="sum") / 16
    loss.backward()
    first_w = next(iter(net.parameters())).grad  # [3, 64, 32]: each member's first layer
    for i, m in enumerate(models):
        m.train()
        alone = m(x[i])
        torch.testing.assert_close(out[i], alone, rtol=1e-5, atol=1e-5)
        F.cross_entropy(alone, y[i]).backward()
        torch.testing.assert_close(first_w[i], m[1].weight.grad.T, rtol=1e-4, atol=1e-6)


def test_members_start_from_their_own_seeds():
    a, b = _models(CFG, 2, (1, 8, 8), 4)
    assert not torch.equal(a[1].weight, b[1].weight)
    assert torch.equal(_models(CFG, 1, (1, 8, 8), 4)[0][1].weight, a[1].weight)


def test_the_trainer_rows_time_runs_alone_and_as_one_pack(tmp_path):
    from synthdata import write_data

    from hpsweep.bench.pack import engine
    from hpsweep.core.schema import Params

    data = write_data(tmp_path / "synthetic.pt")
    rates = engine(Params(), data, n=2, bs=64, repeats=1, threads=1, subset=128, device="cpu")
    assert set(rates) == {"engine alone", "engine pack"}
    assert all(len(r) == 1 and r[0] > 0 for r in rates.values())


def test_width_packs_smaller_members(tmp_path, capsys, monkeypatch):
    from synthdata import write_data

    import hpsweep.bench.pack as bench
    from hpsweep.bench.pack import main

    widths = []
    models = bench._models
    monkeypatch.setattr(bench, "_models", lambda cfg, *a: widths.append(cfg["width"])
                        or models(cfg, *a))

    write_data(tmp_path / "data/prepared/fashion-mnist.pt")
    params = tmp_path / "params.toml"
    params.write_text(f'[study]\ndata_dir = "{tmp_path / "data"}"\n')
    args = ["--params", str(params), "--members", "2", "--batch", "16", "--steps", "2",
            "--repeats", "1", "--threads", "1", "--subset", "64"]
    assert main([*args, "--width", "24"]) == 0
    out = capsys.readouterr().out
    assert "with model.width = 24: 2 members" in out
    assert "engine pack" in out
    assert widths and set(widths) == {24}
