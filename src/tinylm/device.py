"""Pick the device and the mixed-precision context, so the same code runs on a laptop and a GPU.

    device = resolve_device("auto")            # cuda, else mps, else cpu
    with autocast(device, "auto"):             # bf16 on GPUs that support it, fp32 elsewhere
        logits, loss = model(x, y)
"""

from __future__ import annotations

import contextlib
import re

import torch

from tinylm.errors import TinyLMError

# cpu:N and other torch spellings would pass torch.device() and then fail deep inside torch.load
# with a message about the checkpoint, so only the names tinylm documents are let through.
_ACCEPTED = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def is_device_name(name: str) -> bool:
    """Whether ``name`` is one of the spellings tinylm accepts (whether the device exists is another matter)."""
    return _ACCEPTED.fullmatch(name) is not None


def resolve_device(name: str = "auto") -> torch.device:
    if not is_device_name(name):
        raise TinyLMError(f"--device {name!r} is not a device tinylm knows; use auto, cpu, cuda, cuda:N or mps")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TinyLMError(f"--device {name} was asked for but no CUDA GPU is available; use --device auto or cpu")
    if ":" in name and int(name.split(":")[1]) >= torch.cuda.device_count():
        raise TinyLMError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                          "numbered from cuda:0; use one of those or --device cuda")
    if name == "mps" and not torch.backends.mps.is_available():
        raise TinyLMError("--device mps was asked for but MPS is not available; use --device auto or cpu")
    return torch.device(name)


def autocast_dtype(device: torch.device, dtype: str = "auto") -> torch.dtype | None:
    """The autocast dtype to train with, or None for plain fp32."""
    if dtype == "float32" or device.type != "cuda":
        return None  # CPU bf16 autocast is slower than fp32 on most CPUs, and MPS support varies
    if dtype == "bfloat16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: str = "auto", cache: bool = True):
    """Mixed precision for ``device``; ``cache=False`` casts the weights afresh on every use, which a
    CUDA graph needs (it replays the casts it recorded, not a cache filled outside it)."""
    amp_dtype = autocast_dtype(device, dtype)
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype, cache_enabled=cache)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
