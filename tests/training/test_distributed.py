"""DDP over two CPU processes (gloo) trains like one process."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import compose_cfg

from textclf.inference.evaluation import evaluate


@pytest.mark.slow
def test_ddp_sim_trains_over_two_processes_and_matches_a_single_process_evaluation(
    make_cfg, toy_csv: Path, tmp_path: Path
) -> None:
    from conftest import toy_training

    from textclf.training.fit import train

    cfg = make_cfg(
        *toy_training(toy_csv),
        "trainer=ddp_sim",
        "trainer.max_epochs=6",
        "callbacks.early_stopping=null",
        "callbacks.test_report.explain_misclassified=5",
    )
    metrics, _ = train(cfg)
    run = tmp_path / "run"
    saved = json.loads((run / "metrics.json").read_text())
    # rank 0 explains the test's mistakes, if it made any (callbacks.test_report.explain_misclassified)
    explained = ["misclassified.html"] if saved["test/acc"] < 1 and importlib.util.find_spec("captum") else []
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == sorted(
        ["checkpoints", "metrics.json", "tensorboard", *explained]
    )
    assert len(list((run / "checkpoints").glob("epoch*.ckpt"))) == 1
    single = evaluate(
        compose_cfg(
            tmp_path / "eval",
            None,
            f"ckpt_path={saved['best_model_path']}",
            "data=files",
            f"data.train_file={toy_csv}",
            "precision=32-true",
            config="eval",
        )
    )
    for key in ("test/acc", "test/f1", "test/precision", "test/recall", "test/loss"):
        assert saved[key] == pytest.approx(single[key], abs=1e-5), key
    assert saved["test/acc"] >= 0.9


@pytest.mark.long
def test_ddp_sim_killed_and_resumed_ends_as_if_never_stopped(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Every rank's random state travels in last.ckpt and comes back on that rank: dropout draws the same
    masks on each rank as in an uninterrupted run, so the final metrics are the same. (With rank 0's state
    on both ranks, as Lightning restores it, the losses differed in the fourth decimal.)"""
    from conftest import toy_reviews
    from resume_runs import final_metrics, train_command

    csv = tmp_path / "reviews.csv"
    toy_reviews(600).to_csv(csv, index=False)
    ddp = ("trainer=ddp_sim", "callbacks.early_stopping=null", "model.net.dropout=0.3")
    reference = train_command(tmp_path / "uninterrupted", tiny_model_dir, csv, *ddp)
    assert reference.returncode == 0, reference.stderr[-2000:]
    run = tmp_path / "killed"
    # each rank kills itself after step 12 (each holds 15 steps an epoch); last.ckpt was written at step 10
    killed = train_command(run, tiny_model_dir, csv, *ddp, "+callbacks.crash={_target_:crash.KillAtStep,step:12}")
    assert killed.returncode != 0 and not (run / "metrics.json").exists()
    resumed = train_command(run, tiny_model_dir, csv, *ddp, "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "at step 10" in resumed.stderr
    assert final_metrics(run) == final_metrics(tmp_path / "uninterrupted")
