"""DDP over two CPU processes (gloo) trains like one process."""

from __future__ import annotations

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
    )
    metrics, _ = train(cfg)
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == [
        "checkpoints",
        "metrics.json",
        "tensorboard",
    ]
    assert len(list((run / "checkpoints").glob("epoch*.ckpt"))) == 1
    saved = json.loads((run / "metrics.json").read_text())
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
