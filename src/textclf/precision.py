"""`precision=auto`: 16-bit arithmetic where the hardware is fast at it, full fp32 elsewhere."""

from __future__ import annotations

import torch


def resolve_precision(precision: str | int) -> str | int:
    """`auto`: bf16 mixed precision where the hardware runs bf16 fast (a CUDA GPU with bf16, or a CPU with
    AMX or AVX512-BF16), fp16 mixed on older GPUs, else full fp32. Any other value is returned as is."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    fast_bf16 = (
        getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        or getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    )
    return "bf16-mixed" if fast_bf16 else "32-true"


def inference_precision(precision: str | int) -> str | int:
    """`auto` for inference: the weights themselves in 16 bits where the hardware is fast at it, which skips
    autocast's per-operation casts (docs/performance.md, "Inference"); else fp32. Any other value as given:
    `bf16-mixed` reproduces training's test metrics exactly."""
    resolved = resolve_precision(precision)
    return str(resolved).replace("-mixed", "-true") if precision == "auto" else resolved
