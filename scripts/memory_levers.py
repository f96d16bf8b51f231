"""Peak memory and training speed of the memory levers on a bert-base-sized encoder (12 layers, 768 wide,
random weights, the packaged MiniLM's tokenizer), batch 32 of 128 tokens, bf16 autocast where it is fast.

    .venv/bin/python scripts/memory_levers.py                 # plain, gradient checkpointing, LoRA, both
    .venv/bin/python scripts/memory_levers.py --steps 12 --settings plain,checkpointing

Each setting runs in its own process (so its peak RSS is its own): textclf's ClassifierLitModule under a
Lightning Trainer, `--steps` optimizer steps on random token ids, of which the first two (kernel creation,
first optimizer step) are not timed. A benchmark, not a test: the numbers vary with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
from base_model import build_base_model

SETTINGS = {
    "plain": {},
    "checkpointing": {"gradient_checkpointing": True},
    "lora": {"peft": "lora"},
    "lora+checkpointing": {"peft": "lora", "gradient_checkpointing": True},
}


class StepTimer(L.Callback):
    """Wall time of the training steps after the first `skip`."""

    def __init__(self, skip: int) -> None:
        self.skip, self.start, self.seconds = skip, 0.0, 0.0

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch, batch_idx: int) -> None:
        if batch_idx == self.skip:
            self.start = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.seconds = time.perf_counter() - self.start


def worker(setting: str, model_dir: Path, args: argparse.Namespace) -> dict[str, float]:
    import torch

    from textclf import ClassifierLitModule, build_network
    from textclf.precision import resolve_precision

    torch.manual_seed(0)
    net = build_network(2, pretrained=str(model_dir), **SETTINGS[setting])
    model = ClassifierLitModule(net, {0: "a", 1: "b"}, lr=5e-5)
    trained = sum(p.numel() for p in net.parameters() if p.requires_grad)
    ids = torch.randint(1000, 20000, (args.steps, args.batch_size, args.tokens))
    batches = [
        {"input_ids": b, "attention_mask": torch.ones_like(b), "labels": torch.randint(0, 2, (len(b),))} for b in ids
    ]
    timer = StepTimer(skip=2)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        precision=resolve_precision("auto"),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    timed = (args.steps - 2) * args.batch_size
    return {
        "train_samples_per_s": timed / timer.seconds,
        "trained_params": trained,
        "all_params": sum(p.numel() for p in net.parameters()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated: " + ", ".join(SETTINGS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.model_dir, args)), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="textclf-memory-") as scratch:
        model_dir = Path(scratch) / "bert-base-random"
        build_base_model(model_dir)
        print("| setting | trained parameters | train samples/s | peak RSS MB |\n|---|---|---|---|", flush=True)
        for setting in args.settings.split(","):
            command = [
                sys.executable,
                __file__,
                "--worker",
                setting,
                "--model-dir",
                str(model_dir),
                "--steps",
                str(args.steps),
                "--batch-size",
                str(args.batch_size),
                "--tokens",
                str(args.tokens),
            ]
            completed = subprocess.run(command, capture_output=True, text=True)
            line = next((out for out in completed.stdout.splitlines() if out.startswith("RESULT ")), None)
            if line is None:
                print(f"| {setting} | failed: {completed.stderr.strip().splitlines()[-1:]} | | |", flush=True)
                continue
            result = json.loads(line[len("RESULT ") :])
            share = 100 * result["trained_params"] / result["all_params"]
            print(
                f"| {setting} | {result['trained_params']:,} ({share:.2f} %) | {result['train_samples_per_s']:.1f} "
                f"| {result['peak_rss_mb']:,.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
