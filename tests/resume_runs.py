"""Training runs as subprocesses, killed and resumed, and what they leave: the resume tests' helpers
(`from resume_runs import ...`; tests/ is on the path, as for conftest and crash)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import child_env, toy_training
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

# 480 training rows / 16 = 30 steps an epoch, 2 epochs; last.ckpt every 5 steps
# 480 training rows / 16 = 30 steps an epoch, 2 epochs; last.ckpt every 5 steps
STEPS_PER_EPOCH = 30


def train_command(
    run: Path, model_dir: Path, csv: Path, *extra: str, every_n_steps: int = 5
) -> subprocess.CompletedProcess:
    overrides = [
        *toy_training(csv),
        "trainer.max_epochs=2",
        f"hydra.run.dir={run}",
        f"model.net.pretrained={model_dir}",
        f"paths.cache_dir={run.parent / 'cache'}",
        f"callbacks.last_checkpoint.every_n_train_steps={every_n_steps}",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
        "+trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1",
        *extra,
    ]
    env = child_env()
    return subprocess.run(
        [sys.executable, "-m", "textclf", "train", *overrides], capture_output=True, text=True, env=env
    )


def final_metrics(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["best_model_path"] = Path(metrics["best_model_path"]).name
    return metrics


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def assert_resumes_as_if_never_stopped(
    root: Path, model_dir: Path, csv: Path, *extra: str, kill_at: int, resumed_at: int
) -> None:
    """Train with `extra` uninterrupted, and killed after step `kill_at` then resumed: the resumed run goes on
    from step `resumed_at` and ends with the same metrics and TensorBoard scalars."""
    reference = train_command(root / "uninterrupted", model_dir, csv, *extra)
    assert reference.returncode == 0, reference.stderr[-2000:]
    run = root / "killed"
    crash = f"+callbacks.crash={{_target_:crash.KillAtStep,step:{kill_at}}}"
    killed = train_command(run, model_dir, csv, *extra, crash)
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = train_command(run, model_dir, csv, *extra, "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at step {resumed_at}" in resumed.stderr
    assert final_metrics(run) == final_metrics(root / "uninterrupted")
    assert scalars(run) == scalars(root / "uninterrupted")
