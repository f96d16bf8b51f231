"""Compare code variants of a training step in one process: warm epochs over the benchmark's batches,
alternating the variants, so a slow spell of the machine hits them alike (separate runs of
`scripts/benchmark.py` drift by ±5 % on this machine; this sees 1–2 % differences).

    .venv/bin/python scripts/ab_epochs.py variants.py --rounds 8

`variants.py` defines `VARIANTS = {name: (switch_on, switch_off)}`; each function takes the model and
may patch anything (a method, a module, a setting). The first variant is the baseline. Example:

    import torch
    from textclf.model import speedups
    current = speedups.FastDropout.forward
    def bool_mask(self, x):  # the mask cast from bool, as before
        if not self.training or self.p == 0:
            return x
        draws = torch.randint(-(2**63), 2**63 - 1, ((x.numel() + 3) // 4,), dtype=torch.int64)
        keep = draws.view(torch.int16)[: x.numel()].view(x.shape) >= round(self.p * 65536) - 32768
        return x * keep.to(x.dtype) * (1 / (1 - self.p))
    def use(forward):
        return lambda model: setattr(speedups.FastDropout, "forward", forward)
    VARIANTS = {"bool_mask": (use(bool_mask), use(current)), "current": (use(current), use(current))}

A benchmark, not a test: it prints the median seconds per warm epoch of each variant and the ratios.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate

from textclf import compose_config
from textclf.precision import resolve_precision


class VariantSwitch(L.Callback):
    """Switches variants where the batch stream says so, and times each variant's epochs."""

    def __init__(self, variants: dict) -> None:
        self.variants, self.current, self.start = variants, None, 0.0
        self.seconds: dict[str, list[float]] = {name: [] for name in variants}

    def on_train_batch_start(self, trainer: L.Trainer, model: L.LightningModule, batch: tuple, batch_idx: int) -> None:
        if batch[0] != self.current:
            self._close(model)
            if batch[0] in self.variants:
                self.variants[batch[0]][0](model)
            self.current, self.start = batch[0], time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, model: L.LightningModule) -> None:
        self._close(model)

    def _close(self, model: L.LightningModule) -> None:
        if self.current in self.variants:
            self.seconds[self.current].append(time.perf_counter() - self.start)
            self.variants[self.current][1](model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", help="a Python file defining VARIANTS = {name: (switch_on, switch_off)}")
    parser.add_argument("--rounds", type=int, default=6, help="epochs per variant, after one warm-up epoch")
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--override", action="append", default=[], help="a textclf-train override (repeatable)")
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("variants", args.variants)
    variants = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(variants)

    with tempfile.TemporaryDirectory(prefix="textclf-ab-") as scratch:
        switch = run(variants.VARIANTS, args, Path(scratch))
    names = list(variants.VARIANTS)
    base = statistics.median(switch.seconds[names[0]])
    for name in names:
        median = statistics.median(switch.seconds[name])
        print(
            f"{name:>16}: median {median:.3f} s per warm epoch, {base / median:.3f}x {names[0]}  "
            f"({', '.join(f'{s:.3f}' for s in switch.seconds[name])})"
        )


def run(variants: dict, args: argparse.Namespace, run_dir: Path) -> VariantSwitch:
    """One warm-up epoch, then `args.rounds` epochs of each variant in turn."""
    cfg = compose_config(
        "train",
        [
            "data=rotten_tomatoes",
            f"data.max_train_examples={args.examples}",
            "model.lr=5e-5",
            f"paths.cache_dir={run_dir / 'cache'}",
            *args.override,
        ],
        run_dir,
    )
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    batches = list(datamodule.train_dataloader())
    model = instantiate(cfg.model, net={"num_labels": len(datamodule.id2label)}, id2label=datamodule.id2label)
    plan = ["warm-up"] + [name for _ in range(args.rounds) for name in variants]
    stream = [(name, batch) for name in plan for batch in batches]
    step = type(model).training_step
    model.training_step = lambda tagged, batch_idx: step(model, tagged[1], batch_idx)

    switch = VariantSwitch(variants)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=len(stream),
        precision=resolve_precision("auto"),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[switch],
        deterministic=True,
    )
    torch.utils.deterministic.fill_uninitialized_memory = False  # as train() does
    trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader(stream, batch_size=None))
    return switch


if __name__ == "__main__":
    main()
