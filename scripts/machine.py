"""What a benchmark ran on: the CPU, the instruction sets that decide its speed, torch's view of them, and the
measured matrix-product roofs, so every figure names its machine."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch

# the instruction sets that decide bf16 and fp32 speed on x86 (AMX: Intel's tile units; AVX512-BF16: bf16 dot
# products in vector registers, e.g. AMD EPYC Zen 4)
ISA_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512_vnni", "avx512f", "avx2")


def cpuinfo_field(name: str) -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.split(":")[0].strip() == name), "")


def matmul_peak(dtype: torch.dtype, device: str = "cpu", largest: int = 2048, seconds: float = 1.0) -> float:
    """GFLOP/s of a square matrix product on `device`, repeated for about `seconds`: `largest` × `largest`
    where one product takes under an eighth of that, else the largest power of two that does (a CPU with
    AVX2 alone computes bf16 products hundreds of times slower than fp32: one 2048 × 2048 takes seconds)."""
    size = 256
    while True:
        a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
        start = time.perf_counter()
        a @ b
        synchronize(device)
        if size >= largest or (time.perf_counter() - start) * 8 * 8 > seconds:  # the next size: 8× the work
            break
        size *= 2
    products, start = 0, time.perf_counter()
    while products < 1 or time.perf_counter() - start < seconds:
        a @ b
        products += 1
        synchronize(device)
    return 2 * size**3 * products / (time.perf_counter() - start) / 1e9


def synchronize(device: str | torch.device) -> None:
    """Wait for the GPU's queued work, so that a timer reads when it is done."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def describe_machine(device: str = "cpu", largest: int = 2048) -> dict:
    """The CPU's name and flags, torch's ISA and oneDNN settings, the thread count, the GPU's name on
    `device="cuda"`, and the bf16/fp32 roofs of `device`."""
    flags = set(cpuinfo_field("flags").split())
    return {
        "cpu": cpuinfo_field("model name") or platform.processor(),
        "cores": os.cpu_count(),
        "isa": {flag: flag in flags for flag in ISA_FLAGS},
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn": torch.backends.mkldnn.is_available(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "default"),
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "bf16_gflops": matmul_peak(torch.bfloat16, device, largest),
        "fp32_gflops": matmul_peak(torch.float32, device, largest),
    }


def machine_line(machine: dict) -> str:
    isa = ", ".join(flag for flag, present in machine["isa"].items() if present) or "none of " + ", ".join(ISA_FLAGS)
    gpu = f"{machine['gpu']} on " if machine.get("gpu") else ""
    return (
        f"{gpu}{machine['cpu']} ({machine['cores']} cores; {isa}; torch {machine['torch']}, "
        f"{machine['torch_cpu_capability']}): bf16 {machine['bf16_gflops']:.3g} GFLOP/s, "
        f"fp32 {machine['fp32_gflops']:.3g} GFLOP/s"
    )
