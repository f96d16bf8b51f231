"""Crash safety: a run killed by SIGKILL (mid-epoch, or mid-way through writing a checkpoint) resumes
in its own run dir and ends exactly as a run that never stopped; a full disk keeps the last checkpoint."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest
import torch
from conftest import toy_reviews, toy_training
from resume_runs import STEPS_PER_EPOCH, final_metrics, scalars, train_command

from textclf.atomic import OutputError
from textclf.run_dirs import is_unfinished, run_dir
from textclf.running import run_command
from textclf.training.fit import train
from textclf.training.lit_module import load_lit_module
from textclf.training.resuming import AtomicCheckpointIO


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("resume")
    csv = root / "reviews.csv"
    toy_reviews(600).to_csv(csv, index=False)
    result = train_command(root / "uninterrupted", tiny_model_dir, csv)
    assert result.returncode == 0, result.stderr[-2000:]
    return root / "uninterrupted", csv


@pytest.mark.slow
@pytest.mark.parametrize(
    "crash, every_n_steps, resumed_step",
    [
        ("{_target_:crash.KillAtStep,step:37}", 5, 35),  # mid-epoch 2, after a periodic checkpoint
        ("{_target_:crash.KillAtStep,step:31}", 5, STEPS_PER_EPOCH),  # right after the epoch-end checkpoint
        ("{_target_:crash.KillAtStep,step:45}", 1000, STEPS_PER_EPOCH),  # from the checkpoint after validation
        ("{_target_:crash.KillDuringCheckpointWrite,write:4}", 5, 15),  # half-way through writing the 4th one
    ],
)
def test_a_killed_run_resumes_and_ends_as_if_it_never_stopped(
    uninterrupted, tiny_model_dir: Path, crash: str, every_n_steps: int, resumed_step: int
) -> None:
    reference, csv = uninterrupted
    run = reference.parent / f"killed-{resumed_step}-{every_n_steps}"
    killed = train_command(run, tiny_model_dir, csv, f"+callbacks.crash={crash}", every_n_steps=every_n_steps)
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL: no cleanup ran
    assert not (run / "metrics.json").exists()
    # whatever was being written, last.ckpt is whole
    assert load_lit_module(run / "checkpoints" / "last.ckpt").id2label == {0: "negative", 1: "positive"}

    resumed = train_command(run, tiny_model_dir, csv, "resume=auto", every_n_steps=every_n_steps)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from {run / 'checkpoints' / 'last.ckpt'} at step {resumed_step}" in resumed.stderr
    assert final_metrics(run) == final_metrics(reference)
    # one TensorBoard run, each step once, every logged value as in the uninterrupted run
    curves = scalars(run)
    assert curves == scalars(reference)
    steps = [step for step, _ in curves["train/loss"]]
    assert steps == sorted(set(steps)) and len(steps) == 2 * STEPS_PER_EPOCH
    assert not list((run / "checkpoints").glob(".*.tmp-*"))  # the half-written file is gone


def test_resume_auto_continues_the_newest_unfinished_run(tmp_path: Path) -> None:
    runs = tmp_path / "outputs" / "train" / "runs"
    fresh = str(runs / "2026-11-24_12-00-00")
    assert run_dir(None, fresh) == fresh
    assert run_dir("auto", fresh) == fresh  # nothing to resume: a new run
    for name, finished in (
        ("2026-11-24_10-00-00", False),
        ("2026-11-24_11-00-00", True),
        ("2026-11-24_09-00-00", False),
    ):
        (runs / name / "checkpoints").mkdir(parents=True)
        (runs / name / "checkpoints" / "last.ckpt").write_bytes(b"x")
        if finished:
            (runs / name / "metrics.json").write_text("{}")
        time.sleep(0.01)
    # the most recently written unfinished run; the finished one is never resumed
    assert run_dir("auto", fresh) == str(runs / "2026-11-24_09-00-00")
    assert run_dir(str(runs / "2026-11-24_10-00-00"), fresh) == str(runs / "2026-11-24_10-00-00")


@pytest.mark.parametrize(
    "written, unfinished",
    [
        ((".hydra/config.yaml",), False),  # composed, never started
        (("checkpoints/last.ckpt",), True),
        (("checkpoints/contrastive_last.ckpt",), True),  # strategy=contrastive killed in phase 1
        (("fold_0/checkpoints/last.ckpt",), True),
        (("fold_1/checkpoints/contrastive_last.ckpt",), True),
        (("fold_0/metrics.json",), True),
        (("sweep.json",), True),
        (("checkpoints/last.ckpt", "metrics.json"), False),
    ],
)
def test_a_run_is_unfinished_once_it_saved_a_checkpoint_of_any_kind_until_its_metrics(
    tmp_path: Path, written: tuple[str, ...], unfinished: bool
) -> None:
    for name in written:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert is_unfinished(tmp_path) == unfinished


def test_resuming_a_run_dir_without_checkpoint_is_a_one_line_error(make_cfg, toy_csv: Path, capsys) -> None:
    cfg = make_cfg(*toy_training(toy_csv), "resume=outputs/nowhere")
    with pytest.raises(SystemExit) as exit_info:
        run_command(train, cfg)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().endswith("last.ckpt not found)")


@pytest.mark.parametrize(
    "failure, reason", [(errno.ENOSPC, "No space left on device"), (errno.EACCES, "Permission denied")]
)
def test_a_checkpoint_that_cannot_be_written_keeps_the_previous_one(
    tmp_path: Path, monkeypatch, failure: int, reason: str
) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    writer = AtomicCheckpointIO()
    writer.save_checkpoint({"step": 1, "weights": torch.ones(3)}, path)

    def fail_half_way(obj, target, *args, **kwargs) -> None:
        Path(target).write_bytes(b"PK partial")
        raise OSError(failure, os.strerror(failure))

    monkeypatch.setattr(torch, "save", fail_half_way)
    with pytest.raises(OutputError) as error:
        writer.save_checkpoint({"step": 2, "weights": torch.zeros(3)}, path)
    assert str(error.value) == f"{path}: cannot write the checkpoint: {reason} (the previous one is kept)"
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_a_full_disk_during_training_ends_with_one_line_and_a_loadable_checkpoint(
    make_cfg, toy_csv: Path, monkeypatch, capsys
) -> None:
    real_save, saves = torch.save, []

    def save(obj, target, *args, **kwargs) -> None:
        saves.append(target)
        if len(saves) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, target, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    cfg = make_cfg(*toy_training(toy_csv), "callbacks.last_checkpoint.every_n_train_steps=5")
    with pytest.raises(SystemExit) as exit_info:
        run_command(train, cfg)
    assert exit_info.value.code == 2
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"textclf: error: {last}: cannot write the checkpoint: No space left on device (the previous one is kept)"
    )
    monkeypatch.setattr(torch, "save", real_save)
    assert load_lit_module(last).id2label == {0: "negative", 1: "positive"}


def test_outputs_that_cannot_be_written_give_one_line_and_keep_the_old_file(tmp_path: Path, monkeypatch) -> None:
    import numpy as np
    import pandas as pd

    from textclf.inference.writing import write_predictions

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with pytest.raises(OutputError, match=r"a-file/out.csv: cannot write the file: File exists: .*a-file$"):
        write_predictions(str(blocked / "out.csv"), ["fine"], ["pos"], np.ones((1, 1)), {0: "pos"})

    output = tmp_path / "predictions.csv"
    write_predictions(str(output), ["fine"], ["pos"], np.ones((1, 1)), {0: "pos"})
    before = output.read_text()

    def disk_full(self, target, *args, **kwargs) -> None:
        Path(target).write_text("text,la")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
    with pytest.raises(OutputError) as error:
        write_predictions(str(output), ["bad"], ["neg"], np.ones((1, 1)), {0: "neg"})
    assert str(error.value) == f"{output}: cannot write the file: No space left on device (the previous one is kept)"
    assert output.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "predictions.csv"]


@pytest.mark.slow
def test_fitting_on_from_a_finished_run_trains_the_added_epochs(make_cfg, toy_csv: Path) -> None:
    _, objects = train(make_cfg(*toy_training(toy_csv), "trainer.max_epochs=2", "callbacks.early_stopping=null"))
    last = Path(objects["trainer"].checkpoint_callback.dirpath) / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 2 * STEPS_PER_EPOCH
    _, objects = train(
        make_cfg(
            *toy_training(toy_csv),
            "trainer.max_epochs=3",
            "callbacks.early_stopping=null",
            f"ckpt_path={last}",
        )
    )
    assert objects["trainer"].global_step == 3 * STEPS_PER_EPOCH  # the third epoch trained, not skipped


def test_fitting_on_from_a_missing_or_different_checkpoint_is_one_line(make_cfg, toy_csv: Path, capsys) -> None:
    _, objects = train(make_cfg(*toy_training(toy_csv), "trainer.max_epochs=1"))
    last = Path(objects["trainer"].checkpoint_callback.dirpath) / "last.ckpt"
    best = Path(objects["trainer"].checkpoint_callback.best_model_path)
    for override, expected in (
        (f"ckpt_path={last.parent / 'nope.ckpt'}", f"{last.parent / 'nope.ckpt'}: checkpoint not found"),
        (f"ckpt_path={best}", f"{best}: holds the weights only (a best checkpoint); fit on from last.ckpt"),
        (f"ckpt_path={last}", f"{last}: holds a network with head native, this run builds one with mean"),
    ):
        with pytest.raises(SystemExit):
            run_command(train, make_cfg(*toy_training(toy_csv), "model.net.head=mean", override))
        assert capsys.readouterr().err.strip().splitlines()[-1] == f"textclf: error: {expected}"
