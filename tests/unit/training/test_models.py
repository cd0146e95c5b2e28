"""Model builders: every config variant builds, runs forward and has the expected size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hpsweep.core.schema import Params, resolve_run
from hpsweep.training.models import build_model, count_params

BASE = Params().run_base()


def model_cfg(**overrides) -> dict:
    """A model dict exactly as the validated run config gives it to the trainer."""
    return resolve_run(BASE, {f"model.{k}": v for k, v in overrides.items()})["model"]


def forward(cfg: dict, shape=(1, 28, 28), classes=10, n=3) -> tuple[nn.Module, torch.Tensor]:
    model = build_model(cfg, shape, classes)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(n, *shape))
    return model, out


@pytest.mark.parametrize("activation", ["relu", "silu", "gelu", "tanh", "leaky_relu"])
@pytest.mark.parametrize("batch_norm,dropout", [(True, 0.1), (False, 0.0)])
def test_mlp_variants(activation, batch_norm, dropout):
    cfg = model_cfg(arch="mlp", depth=2, width=32, activation=activation,
                    batch_norm=batch_norm, dropout=dropout)
    model, out = forward(cfg)
    assert out.shape == (3, 10)
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == batch_norm
    assert any(isinstance(m, nn.Dropout) for m in model.modules()) == (dropout > 0)


def test_mlp_width_list_and_param_count():
    cfg = model_cfg(arch="mlp", depth=2, width=[512, 128], batch_norm=False, dropout=0.0)
    model, out = forward(cfg)
    assert out.shape == (3, 10)
    assert count_params(model) == (784 * 512 + 512) + (512 * 128 + 128) + (128 * 10 + 10)


def test_mlp_784_512_512_10_with_batch_norm():
    model, _ = forward(model_cfg(arch="mlp", depth=2, width=512, batch_norm=True))
    # BN replaces the Linear bias: 2 x 512 (gamma, beta) per BN layer.
    expected = 784 * 512 + 2 * 512 + 512 * 512 + 2 * 512 + 512 * 10 + 10
    assert count_params(model) == expected


@pytest.mark.parametrize("pool", ["max", "avg", "none"])
@pytest.mark.parametrize("head", ["flatten", "gap"])
@pytest.mark.parametrize("residual", [False, True])
def test_cnn_variants(pool, head, residual):
    cfg = model_cfg(arch="cnn", channels=[8, 16], convs_per_block=2, kernel_size=5, pool=pool,
                    head=head, residual=residual, fc=[16], activation="gelu", dropout=0.2)
    model, out = forward(cfg, shape=(3, 16, 16), classes=7)
    assert out.shape == (3, 7)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    proj = [c for c in convs if c.kernel_size == (1, 1)]
    # Residual: a 1x1 projection wherever the channel count changes (3->8, 8->16).
    assert len(proj) == (2 if residual else 0)
    assert len(convs) == 4 + len(proj)


def test_cnn_no_fc_no_bn():
    cfg = model_cfg(arch="cnn", channels=[4], fc=[], batch_norm=False, dropout=0.5)
    model, out = forward(cfg)
    assert out.shape == (3, 10)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_cnn_pooling_stops_at_two_pixels():
    # 28 -> 14 -> 7 -> 3 -> (3 // 2 = 1 < 2: no pool) 3 -> 3 ...
    cfg = model_cfg(arch="cnn", channels=[4] * 6, head="flatten", fc=[])
    model = build_model(cfg, (1, 28, 28), 10)
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linear[0].in_features == 4 * 3 * 3
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_writeup_000_mnist_cnn():
    """Conv 40/104 + FC 150 + dropout 0.46 (Optuna-tuned MNIST CNN, 99.05 %)."""
    cfg = model_cfg(arch="cnn", channels=[40, 104], fc=[150], dropout=0.4604322504121025,
                    batch_norm=False, activation="relu", pool="max")
    model, out = forward(cfg)
    assert out.shape == (3, 10)
    expected = (1 * 9 * 40 + 40) + (40 * 9 * 104 + 104) + (104 * 7 * 7 * 150 + 150) + 1510
    assert count_params(model) == expected == 804_004
    assert any(isinstance(m, nn.Dropout) and abs(m.p - 0.46) < 0.01 for m in model.modules())


@pytest.mark.parametrize("variant", [
    {"channels": [32, 32, 64, 64]},
    {"channels": [32, 64], "convs_per_block": 2},
])
def test_writeup_004_mnist_cnn_4_convs_silu(variant):
    """4 conv layers 32 -> 64 with SiLU (MNIST CNN, 99.3 %), in both spellings."""
    cfg = model_cfg(arch="cnn", activation="silu", fc=[128], **variant)
    model, out = forward(cfg)
    assert out.shape == (3, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64]
    assert any(isinstance(m, nn.SiLU) for m in model.modules())


def test_writeup_002_tiny_imagenet_residual():
    """4 residual blocks 64/128/256/256, GAP head, FC 512, dropout 0.3; 3x64x64, 200 classes."""
    cfg = model_cfg(arch="cnn", channels=[64, 128, 256, 256], residual=True, head="gap",
                    fc=[512], dropout=0.3, activation="relu", batch_norm=True)
    model, out = forward(cfg, shape=(3, 64, 64), classes=200, n=2)
    assert out.shape == (2, 200)
    assert isinstance(model[4], nn.AdaptiveAvgPool2d)
    # Per block: conv (no bias) + BN, plus a 1x1 projection + BN where channels change.
    blocks = [(3, 64), (64, 128), (128, 256), (256, 256)]
    expected = sum(9 * a * b + 2 * b + (a * b + 2 * b if a != b else 0) for a, b in blocks)
    expected += (256 * 512 + 512) + (512 * 200 + 200)
    assert count_params(model) == expected == 1_237_832


def test_channels_last_forward_matches():
    cfg = model_cfg(arch="cnn", channels=[8, 16], residual=True)
    model = build_model(cfg, (3, 16, 16), 5).eval()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        got = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_count_params_trainable_only():
    model = build_model(model_cfg(arch="mlp", depth=1, width=8), (1, 4, 4), 2)
    total = count_params(model)
    model[1].weight.requires_grad_(False)
    assert count_params(model) == total - 16 * 8
    assert count_params(model, trainable_only=False) == total


@pytest.mark.parametrize("cfg,shape,match", [
    ({"arch": "rnn"}, (1, 8, 8), "arch"),
    ({"arch": "cnn", "kernel_size": 4}, (1, 8, 8), "odd"),
    ({"arch": "mlp", "activation": "swish"}, (1, 8, 8), "activation"),
    ({"arch": "mlp", "depth": 3, "width": [8, 8]}, (1, 8, 8), "depth"),
    ({"arch": "mlp"}, (8, 8), "input_shape"),
])
def test_bad_configs_raise(cfg, shape, match):
    with pytest.raises(ValueError, match=match):
        build_model(cfg, shape, 10)
