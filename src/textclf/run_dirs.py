"""Run directories: the one a new run writes into, and the unfinished one that `resume=auto` (or
`resume=<run dir>`) continues, found before Hydra creates any folder."""

from __future__ import annotations

from pathlib import Path

from textclf.errors import CheckpointError

LAST = "last.ckpt"
# phase 1 of strategy=contrastive (training/contrastive.py), beside last.ckpt
CONTRASTIVE_LAST = "contrastive_last.ckpt"
CONTRASTIVE_BEST = "contrastive.ckpt"  # its classifier, the run's best checkpoint


# what a run writes once it has started: a checkpoint of either kind, its own or a fold's, a fold's metrics,
# a sweep's study
STARTED = (
    *(f"{folder}/{name}" for folder in ("checkpoints", "fold_*/checkpoints") for name in (LAST, CONTRASTIVE_LAST)),
    "fold_*/metrics.json",
    "sweep.json",
)


def is_unfinished(run_dir: Path) -> bool:
    """A run that saved a checkpoint (or a sweep that started its study, or a cross-validation that started
    a fold) but never wrote its final metrics."""
    started = any(any(run_dir.glob(pattern)) for pattern in STARTED)
    return started and not (run_dir / "metrics.json").exists()


def run_dir(resume: str | None, fresh: str) -> str:
    """Hydra's run dir (resolver `textclf_run_dir`): `fresh` for a new run; with `resume=auto` the newest
    unfinished run beside it (or `fresh` when there is none); with `resume=<run dir>` that run."""
    if resume is None:
        return fresh
    if str(resume) != "auto":
        return str(resume)
    runs = Path(fresh).parent
    candidates = [path for path in runs.iterdir() if path.is_dir() and is_unfinished(path)] if runs.is_dir() else []
    return str(max(candidates, key=lambda path: path.stat().st_mtime)) if candidates else fresh


def resume_checkpoint(output_dir: Path, resume: str | None) -> Path | None:
    """The checkpoint a resumed run continues from: the run dir's last.ckpt, or None for a new run (or a
    contrastive run killed in phase 1, which resumes from its own checkpoint)."""
    if resume is None:
        return None
    last = output_dir / "checkpoints" / LAST
    if last.is_file():
        return last
    if str(resume) != "auto" and not (output_dir / "checkpoints" / CONTRASTIVE_LAST).is_file():
        raise CheckpointError(f"resume={resume}: no checkpoint to resume from ({last} not found)")
    return None
