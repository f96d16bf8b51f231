"""`precision=auto` follows the instruction sets the CPU reports (docs/performance.md, "Choices by CPU")."""

import pytest
import torch

from textclf.precision import inference_precision, resolve_precision


@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "training", "inference"),
    [
        (True, True, "bf16-mixed", "bf16-true"),  # Intel Xeon since Sapphire Rapids
        (False, True, "bf16-mixed", "bf16-true"),  # AMD EPYC since Zen 4, Intel Cooper Lake
        (False, False, "32-true", "32-true"),  # AVX2 or plain AVX-512: bf16 would be emulated
    ],
)
def test_auto_precision_follows_the_cpus_instruction_sets(
    monkeypatch: pytest.MonkeyPatch, amx: bool, avx512_bf16: bool, training: str, inference: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert resolve_precision("auto") == training
    assert inference_precision("auto") == inference
    assert resolve_precision("32-true") == "32-true" and inference_precision("bf16-mixed") == "bf16-mixed"
