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


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 20) -> float:
    """GFLOP/s of a square matrix product."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def describe_machine() -> dict:
    """The CPU's name and flags, torch's ISA and oneDNN settings, the thread count and the bf16/fp32 roofs."""
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
        "bf16_gflops": matmul_peak(torch.bfloat16),
        "fp32_gflops": matmul_peak(torch.float32),
    }


def machine_line(machine: dict) -> str:
    isa = ", ".join(flag for flag, present in machine["isa"].items() if present) or "none of " + ", ".join(ISA_FLAGS)
    return (
        f"{machine['cpu']} ({machine['cores']} cores; {isa}; torch {machine['torch']}, "
        f"{machine['torch_cpu_capability']}): bf16 {machine['bf16_gflops']:.0f} GFLOP/s, "
        f"fp32 {machine['fp32_gflops']:.0f} GFLOP/s"
    )
