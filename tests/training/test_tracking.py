"""logger=mlflow and logger=wandb (offline): what a training run logs, read back with each tracker's own
client or record format."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import toy_training

from textclf.training.fit import train

# mlflow-skinny and wandb are extras (installed by dev)
mlflow = pytest.importorskip("mlflow")
wandb_proto = pytest.importorskip("wandb.proto.wandb_internal_pb2")

BLOCK = 32 * 1024  # the .wandb file is a LevelDB-style log of protobuf records in 32 KiB blocks
HEADER = 7  # ":W&B", a 2-byte magic, a version byte; then each record: crc (4), length (2), type (1)


def wandb_records(path: Path) -> list:
    """Every record of an offline run's .wandb file, parsed with wandb's own protobuf classes (wandb 0.2x
    ships no Python reader of the file any more)."""
    data, records, pending, position = path.read_bytes(), [], b"", HEADER
    assert data[:4] == b":W&B"
    while position + HEADER <= len(data):
        left = BLOCK - position % BLOCK
        if left < HEADER:  # a block's tail too short for a record header is padding
            position += left
            continue
        length, kind = int.from_bytes(data[position + 4 : position + 6], "little"), data[position + 6]
        if position + HEADER + length > len(data):  # a record still being written
            break
        if kind == 0:
            position += left
            continue
        pending += data[position + HEADER : position + HEADER + length]
        position += HEADER + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_proto.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def finished_records(path: Path, timeout: float = 60.0) -> list:
    """The records once the run's exit record is there: wandb's service may still be writing the file
    when `finish()` returns."""
    deadline = time.monotonic() + timeout
    while True:
        records = wandb_records(path)
        if any(record.HasField("exit") for record in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


@pytest.mark.slow
def test_mlflow_gets_the_config_metrics_confusion_matrices_and_the_export(make_cfg, toy_csv: Path, tmp_path) -> None:
    store = tmp_path / "mlflow"
    cfg = make_cfg(
        *toy_training(toy_csv),
        "trainer.max_epochs=2",
        "logger=mlflow",
        f"logger.mlflow.tracking_uri=sqlite:///{store}/mlflow.db",
        f"logger.mlflow.artifact_location={store}/artifacts",
        "run_group=study-a",
        "log_export=true",
    )
    store.mkdir()
    metrics, objects = train(cfg)
    client = mlflow.tracking.MlflowClient(f"sqlite:///{store}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("textclf").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["data/batch_size"] == "16"
    assert run.data.params["model/lr"] == "0.003"
    assert run.data.params["data/train_file"] == str(toy_csv)
    assert run.data.tags["run_group"] == "study-a"
    assert run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    assert {"val/acc", "val/loss", "train/loss", "test/f1"} <= set(run.data.metrics)
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 2  # one per epoch
    images = [item.path for item in client.list_artifacts(run.info.run_id, "test/confusion_matrix")]
    assert images and images[0].endswith(".png")
    exported = {Path(item.path).name for item in client.list_artifacts(run.info.run_id, "hf_model")}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= exported


@pytest.mark.slow  # wandb's service process takes ~10 s to start and finish
def test_wandb_writes_an_offline_run_with_the_config_metrics_and_group(make_cfg, toy_csv: Path, tmp_path) -> None:
    cfg = make_cfg(*toy_training(toy_csv), "trainer.max_epochs=2", "logger=wandb", "run_group=study-b")
    metrics, _ = train(cfg)
    (run_file,) = (tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")
    records = finished_records(run_file)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.run_group == "study-b"
    config = {
        item.key: json.loads(item.value_json) for r in records if r.HasField("config") for item in r.config.update
    }
    assert config["data"]["batch_size"] == 16
    assert config["data"]["train_file"] == str(toy_csv)
    history = [
        {item.key or "/".join(item.nested_key): item.value_json for item in r.history.item}
        for r in records
        if r.HasField("history")
    ]
    assert sum("val/acc" in step for step in history) == 2
    test_acc = [float(step["test/acc"]) for step in history if "test/acc" in step]
    assert test_acc == [pytest.approx(metrics["test/acc"])]
    assert sum("val/confusion_matrix/_type" in step for step in history) == 2  # the images, by reference
    assert list((run_file.parent / "files" / "media" / "images").rglob("*.png"))
