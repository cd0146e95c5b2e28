"""Device choice, bf16 policy, and the dataset held as tensors on the device.

The fast path: the whole dataset lives on the training device, normalised once with
the train split's per-channel mean/std, and a batch is an index slice of it. No
DataLoader, no per-sample Python.
"""

from __future__ import annotations

import contextlib
import logging

import torch

from hpsweep.data.prepared import PreparedData

log = logging.getLogger(__name__)

# Above this many bytes of float32 images the splits stay uint8 on the device and each
# batch is normalised on the fly (one fused elementwise op): Tiny ImageNet as float32
# is ~5 GB, as uint8 1.2 GB.
FLOAT_CACHE_LIMIT_BYTES = 2 << 30


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" -> cuda, then mps, then cpu; an explicit device must be available."""
    mps_ok = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_ok:
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device = 'cuda' but torch.cuda.is_available() is False on this "
                           "machine; use device = 'auto' or 'cpu'")
    if name == "mps" and not mps_ok:
        raise RuntimeError("device = 'mps' but torch.backends.mps.is_available() is False on "
                           "this machine; use device = 'auto' or 'cpu'")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 instructions (AVX-512 BF16 or AMX); emulated bf16 is slow."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(torch.cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except Exception:  # private API: absent or failing means "unknown" -> no
            pass
    return False


def bf16_enabled(setting: str, device: torch.device) -> bool:
    """train.bf16: "on"/"off" force; "auto" uses bf16 where the hardware does it natively."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False  # mps: bf16 autocast support depends on the macOS version; opt in with "on"


def autocast(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def channel_stats(x: torch.Tensor, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean/std of uint8 [N,C,H,W] images on the 0..1 scale (float64 sums,
    chunked so no float copy of the whole split is made)."""
    c = x.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for start in range(0, x.shape[0], chunk):
        b = x[start:start + chunk].to(torch.float64)
        s += b.sum(dim=(0, 2, 3))
        s2 += (b * b).sum(dim=(0, 2, 3))
    n = max(x.shape[0] * x.shape[2] * x.shape[3], 1)
    mean = s / n
    std = (s2 / n - mean * mean).clamp_min(0).sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))  # constant channel: no scaling
    return (mean / 255).float(), (std / 255).float()


class DeviceData:
    """The prepared splits as tensors on ``device``; ``batch``/``chunk`` return float batches."""

    def __init__(self, data: PreparedData, device: torch.device, *, splits=("train", "val"),
                 channels_last: bool = False, float_limit: int = FLOAT_CACHE_LIMIT_BYTES):
        self.device = device
        self.channels_last = channels_last
        mean, std = channel_stats(data.x_train)
        self.mean_list, self.std_list = mean.tolist(), std.tolist()
        self.mean = mean.view(1, -1, 1, 1).to(device)
        self.std = std.view(1, -1, 1, 1).to(device)
        nbytes = sum(data.split(s)[0].numel() * 4 for s in splits)
        self.normalised = nbytes <= float_limit
        if not self.normalised:
            log.info("dataset is %.1f GB as float32: keeping uint8 on %s, normalising per batch",
                     nbytes / 2**30, device)
        self.x: dict[str, torch.Tensor] = {}
        self.y: dict[str, torch.Tensor] = {}
        for s in splits:
            x, y = data.split(s)
            x = x.to(device)
            if self.normalised:
                x = self._normalise(x)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            self.x[s], self.y[s] = x, y.to(device)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32).mul_(1 / 255).sub_(self.mean).div_(self.std)

    def size(self, split: str) -> int:
        return self.y[split].shape[0]

    def _finish(self, xb: torch.Tensor) -> torch.Tensor:
        if not self.normalised:
            xb = self._normalise(xb)
        if self.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb

    def batch(self, split: str, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._finish(self.x[split][idx]), self.y[split][idx]

    def chunk(self, split: str, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._finish(self.x[split][start:stop]), self.y[split][start:stop]


def device_name(device: torch.device) -> str:
    """Human-readable hardware name for provenance and benchmark headers."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        import platform

        return platform.processor() or platform.machine()
    return device.type
