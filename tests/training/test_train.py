"""End-to-end training through Hydra, in-process, on the tiny model; one run on the real MiniLM."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import toy_reviews, toy_training
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from textclf.config import with_search_path
from textclf.precision import resolve_precision
from textclf.pretrained import resolve_pretrained
from textclf.training.fit import train
from textclf.training.lit_module import ClassifierLitModule, load_lit_module
from textclf.training.resuming import holds_best_weights

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ["rotten_tomatoes", "imdb", "sms_spam", "trec6", "newsgroups20"]


class ModeProbe(L.Callback):
    """Records whether every submodule is in train mode at each training step, and the loss curve."""

    def __init__(self) -> None:
        self.all_training: list[bool] = []
        self.losses: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.all_training.append(all(m.training for m in module.modules()))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def train_with_probe(cfg) -> ModeProbe:
    with open_dict(cfg):
        cfg.callbacks["probe"] = {"_target_": "test_train.ModeProbe"}
    _, objects = train(cfg)
    return next(c for c in objects["trainer"].callbacks if isinstance(c, ModeProbe))


def fit_toy(make_cfg, toy_csv: Path, *overrides: str):
    cfg = make_cfg(*toy_training(toy_csv), *overrides)
    return cfg, *train(cfg)


def test_training_learns_and_writes_checkpoints_metrics_and_events(trained_toy) -> None:
    cfg, metrics, _ = trained_toy
    run = Path(cfg.paths.output_dir)
    assert metrics["test/acc"] >= 0.9, metrics  # the sentiment keyword decides the label
    assert metrics["val/acc_best"] >= metrics["val/acc"] - 1e-6
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["test/f1"] == pytest.approx(metrics["test/f1"])
    assert Path(saved["best_model_path"]).is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    best, last = (
        torch.load(path, weights_only=True) for path in (saved["best_model_path"], run / "checkpoints" / "last.ckpt")
    )
    assert "optimizer_states" not in best and "optimizer_states" in last  # the best is for using, last for resuming
    assert best["network"] == last["network"] and best["tokenizer_files"] == last["tokenizer_files"]
    for key in ("test/precision", "test/recall", "val/loss", "val/f1"):
        assert key in saved

    events = EventAccumulator(str(run / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "val/acc", "val/f1", "lr/decay", "lr/no_decay"} <= tags
    learning_rates = [event.value for event in events.Scalars("lr/decay")]
    assert {"hp/val_acc_best", "hp/test_acc", "hp/test_f1"} <= tags  # the hparams tab's metrics
    assert {"val/confusion_matrix", "test/confusion_matrix"} <= set(events.Tags()["images"])
    assert len(events.Images("val/confusion_matrix")) == cfg.trainer.max_epochs  # one picture per validation
    session = HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    assert session.session_start_info.hparams["model.lr"].number_value == pytest.approx(3e-3)
    peak = max(learning_rates)  # warm-up, then linear decay towards zero
    assert learning_rates[0] < peak <= 3e-3 and learning_rates[-1] < 0.2 * peak
    assert "test/pr_curve" in events.PluginTagToContent("pr_curves")  # two classes: a precision-recall curve
    panel = events.Tensors("test/misclassified/text_summary")[0].tensor_proto.string_val[0].decode()
    wrong = round((1 - metrics["test/acc"]) * 60)
    assert not (run / "misclassified.html").exists()  # explain_misclassified is off by default
    assert panel.splitlines()[0].startswith(f"{wrong} of 60 test examples misclassified")


def test_the_misclassified_panel_lists_the_most_confident_mistakes_with_their_texts() -> None:
    from textclf.training.pictures import TestReport

    texts = pd.Series(["good | fine", "awful", "dull\nplot", "great"])
    probabilities = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7]])
    panel = TestReport(max_examples=5).misclassified_markdown(
        torch.tensor([0, 1, 2, 3]), torch.tensor([1, 0, 0, 1]), probabilities, {0: "neg", 1: "pos"}, texts
    )
    assert panel.splitlines()[0] == "3 of 4 test examples misclassified; the 3 most confident mistakes:"
    assert panel.splitlines()[4:] == [
        "| pos | neg | 0.900 | good \\| fine |",
        "| neg | pos | 0.800 | awful |",
        "| neg | pos | 0.600 | dull plot |",
    ]


def test_the_test_report_explains_the_most_confident_mistakes_in_misclassified_html(
    make_cfg, tmp_path: Path, monkeypatch, caplog
) -> None:
    pytest.importorskip("captum")
    from textclf.training.pictures import TestReport

    frame = toy_reviews(600, seed=8)
    flipped = frame.index % 10 == 0  # mislabelled rows: the model's confident mistakes on the test split
    frame.loc[flipped, "label"] = frame.loc[flipped, "label"].map({"positive": "negative", "negative": "positive"})
    csv = tmp_path / "noisy.csv"
    frame.to_csv(csv, index=False)
    cfg, _, objects = fit_toy(
        make_cfg, csv, "callbacks.early_stopping=null", "callbacks.test_report.explain_misclassified=3"
    )
    run = Path(cfg.paths.output_dir)
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    panel = events.Tensors("test/misclassified/text_summary")[0].tensor_proto.string_val[0].decode().splitlines()
    assert panel[0].startswith("The 3 most confident mistakes with the tokens that made them")
    assert "`misclassified.html` in the run dir" in panel[0] and f"{run / 'misclassified.html'}`" in panel[0]
    counts = re.fullmatch(r"(\d+) of 60 test examples misclassified; the (\d+) most confident mistakes:", panel[2])
    assert counts and int(counts[1]) >= 3 and panel[4] == "| true | predicted | probability | text |"
    mistakes = [row.strip("| ").split(" | ") for row in panel[6:9]]  # true, predicted, probability, text
    page = (run / "misclassified.html").read_text()
    assert page.count("<article") == 3 and page.count('<mark class="') >= sum(len(m[3].split()) for m in mistakes)
    shown = re.sub(r"<[^>]+>", "", page)  # the texts without their coloured tokens' marks
    for true, predicted, _, text in mistakes:
        assert text in shown and f"predicted <b>{predicted}</b>" in page and f"true <b>{true}</b>" in page

    # what the report does without captum, and with the setting 0: nothing, with one line or none
    (run / "misclassified.html").unlink()
    trainer, model = objects["trainer"], objects["model"]
    mistaken = (torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([[0.1, 0.9], [0.8, 0.2]]))
    assert TestReport(explain_misclassified=0).write_explanations(trainer, None, *mistaken, None) is None
    monkeypatch.setitem(sys.modules, "captum", None)  # `import captum` fails
    with caplog.at_level(logging.INFO, logger="textclf"):
        caplog.clear()
        test = trainer.datamodule.frames["test"]
        assert TestReport(explain_misclassified=5).write_explanations(trainer, model, *mistaken, test) is None
    assert [r.getMessage() for r in caplog.records] == [
        "misclassified.html not written: explanations need captum (pip install 'textclf[explain]')"
    ]
    assert not (run / "misclassified.html").exists()


def test_the_encoder_fine_tunes_in_train_mode(make_cfg, toy_csv: Path) -> None:
    cfg = make_cfg("data=files", f"data.train_file={toy_csv}", "debug=limit", "trainer.precision=32-true")
    probe = train_with_probe(cfg)
    assert probe.all_training and all(probe.all_training)


def test_checkpoint_alone_rebuilds_the_model_and_names_its_labels(trained_toy) -> None:
    cfg, _, objects = trained_toy
    model: ClassifierLitModule = objects["model"].eval()  # tested, so holding the best checkpoint's weights
    restored = load_lit_module(objects["trainer"].checkpoint_callback.best_model_path)
    batch = next(iter(objects["datamodule"].test_dataloader()))
    with torch.no_grad():
        torch.testing.assert_close(
            restored(batch["input_ids"], batch["attention_mask"]), model(batch["input_ids"], batch["attention_mask"])
        )
    assert restored.id2label == {0: "negative", 1: "positive"}
    assert restored.tokenizer("good film")["input_ids"] == objects["datamodule"].tokenizer("good film")["input_ids"]
    assert restored.data_hparams["max_length"] == cfg.data.max_length


def test_the_test_runs_on_the_best_weights_whether_or_not_training_ended_on_them(make_cfg, toy_csv: Path) -> None:
    # the best checkpoint kept is epoch 0's (the highest validation loss): testing reads it back
    cfg, metrics, objects = fit_toy(
        make_cfg,
        toy_csv,
        "trainer.max_epochs=2",
        "callbacks.early_stopping=null",
        "callbacks.model_checkpoint.monitor=val/loss",
        "callbacks.model_checkpoint.mode=max",
    )
    trainer, model = objects["trainer"], objects["model"]
    best = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)
    assert best["global_step"] < trainer.global_step and not holds_best_weights(
        trainer, trainer.checkpoint_callback.best_model_path
    )
    for name, weight in model.state_dict().items():
        torch.testing.assert_close(weight, best["state_dict"][name])
    # the best is the last: the weights in memory are tested as they are
    cfg, _, objects = fit_toy(make_cfg, toy_csv, "trainer.max_epochs=1", "callbacks.early_stopping=null")
    assert holds_best_weights(objects["trainer"], objects["trainer"].checkpoint_callback.best_model_path)
    assert objects["model"].data_hparams["max_length"] == cfg.data.max_length  # as reading it back would set


def test_no_weight_decay_on_biases_and_layer_norms(make_cfg, toy_csv: Path) -> None:
    _, _, objects = fit_toy(make_cfg, toy_csv, "debug=fdr")
    model = objects["model"]
    groups = objects["trainer"].optimizers[0].param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = [names[id(p)] for g in groups if g["weight_decay"] == 0.0 for p in g["params"]]
    decay = [names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]]
    assert no_decay and all(n.endswith("bias") or "LayerNorm" in n for n in no_decay)
    assert decay and not any(n.endswith("bias") or "LayerNorm" in n for n in decay)


@pytest.mark.parametrize("preset", ["fdr", "limit", "overfit"])
def test_debug_presets_run(make_cfg, toy_csv: Path, preset: str) -> None:
    cfg = make_cfg(
        "data=files",
        f"data.train_file={toy_csv}",
        f"debug={preset}",
        "trainer.precision=32-true",
        *(["trainer.max_epochs=2"] if preset == "overfit" else []),
    )
    assert cfg.task_name == "debug"
    metrics, _ = train(cfg)
    assert "val/acc" in metrics


@pytest.mark.parametrize("dataset", DATASETS)
def test_each_dataset_has_a_data_config_and_an_experiment(dataset: str) -> None:
    with initialize_config_module("textclf.conf", version_base="1.3"):
        cfg = compose("train", overrides=with_search_path("train", [f"experiment={dataset}"]))
    assert cfg.data.source == dataset


def test_precision_auto_picks_bf16_only_where_the_hardware_has_it() -> None:
    assert resolve_precision("32-true") == "32-true"
    expected = (
        "bf16-mixed" if torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported() else "32-true"
    )
    assert torch.cuda.is_available() or resolve_precision("auto") == expected


@pytest.mark.slow
def test_bad_data_file_gives_a_one_line_error_from_the_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "textclf.commands.train",
            "data=files",
            f"data.train_file={tmp_path / 'nope.csv'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"textclf: error: {tmp_path / 'nope.csv'}: file not found"


@pytest.mark.slow
def test_configs_ship_inside_the_wheel(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    names = set(zipfile.ZipFile(next(tmp_path.glob("textclf-*.whl"))).namelist())
    configs = {f"textclf/conf/{path.relative_to(ROOT / 'conf')}" for path in (ROOT / "conf").rglob("*.yaml")}
    assert "textclf/conf/data/rotten_tomatoes.yaml" in configs and configs - names == set()


@pytest.mark.parametrize("preset, precision", [("bf16", "bf16-mixed"), ("fp16", "16-mixed"), ("fp32", "32-true")])
def test_precision_presets_set_the_trainer_precision(make_cfg, preset: str, precision: str) -> None:
    assert make_cfg("trainer=gpu", f"mixed_precision={preset}").trainer.precision == precision


def test_the_slurm_launcher_preset_composes_with_the_submitit_plugin(tmp_path: Path) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_module("textclf.conf", version_base="1.3"):
        cfg = compose(
            "train",
            overrides=with_search_path("train", ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=4"]),
            return_hydra_config=True,
        )
    GlobalHydra.instance().clear()
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.tasks_per_node == 4 and launcher.timeout_min == 240


@pytest.mark.slow
def test_packaged_minilm_fine_tunes_and_its_loss_falls(make_cfg) -> None:
    """The real all-MiniLM-L6-v2 from its PyPI package, a few dozen steps on rotten_tomatoes."""
    cfg = make_cfg(
        "data.max_train_examples=480",
        "data.batch_size=16",
        "trainer.max_epochs=2",
        "model.lr=1e-4",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
        "callbacks.early_stopping=null",
        model_dir=None,
    )
    assert Path(resolve_pretrained(cfg.model.net.pretrained)).is_dir()
    probe = train_with_probe(cfg)
    assert len(probe.losses) == 60
    first, last = sum(probe.losses[:10]) / 10, sum(probe.losses[-10:]) / 10
    assert last < first - 0.1, (first, last)


@pytest.mark.slow
def test_multi_label_data_trains_with_a_sigmoid_per_label(make_cfg, tmp_path: Path) -> None:
    frame = toy_reviews(600, seed=2)
    words = frame["text"].str.split()
    frame["label"] = [
        "|".join([label] + [topic for topic in ("acting", "plot") if topic in text])
        for label, text in zip(frame["label"], words)
    ]
    path = tmp_path / "multi.csv"
    frame.to_csv(path, index=False)
    cfg = make_cfg(
        *toy_training(path),
        "data.multi_label=true",
        "data.label_delimiter=|",
        "trainer.max_epochs=8",
        "model.net.head=mean",
    )
    metrics, objects = train(cfg)
    assert objects["datamodule"].id2label == {0: "acting", 1: "negative", 2: "plot", 3: "positive"}
    assert isinstance(objects["model"].loss, torch.nn.BCEWithLogitsLoss)
    assert metrics["test/f1_micro"] >= 0.9, metrics


def test_balanced_class_weights_follow_the_training_frequencies(make_cfg, tmp_path: Path) -> None:
    frame = toy_reviews(400, seed=4)
    frame = pd.concat([frame[frame.label == "positive"], frame[frame.label == "negative"].iloc[:40]])
    path = tmp_path / "imbalanced.csv"
    frame.to_csv(path, index=False)
    cfg = make_cfg(*toy_training(path), "model.class_weights=balanced", "debug=fdr")
    _, objects = train(cfg)
    counts = np.bincount(objects["datamodule"].datasets["train"].labels)
    weights = objects["model"].loss.weight.tolist()
    assert weights == pytest.approx((counts.sum() / (2 * counts)).tolist())
    assert weights[0] > 3 * weights[1]  # negative is the rare class


@pytest.mark.parametrize(
    ("truncation", "kept"),
    [("head", "w0 w1 w2 w3 w4 w5"), ("tail", "w14 w15 w16 w17 w18 w19"), ("head_tail", "w0 w15 w16 w17 w18 w19")],
)
def test_long_texts_keep_their_head_tail_or_both(tiny_model_dir: Path, truncation: str, kept: str) -> None:
    from transformers import BertTokenizer

    from textclf.data.tokenization import encode

    tokenizer = BertTokenizer(
        vocab={w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{n}" for n in range(20)])}
    )
    ids = encode([" ".join(f"w{n}" for n in range(20))], tokenizer, max_length=8, truncation=truncation)[0]
    assert tokenizer.decode(ids) == f"[CLS] {kept} [SEP]"


@pytest.mark.slow
def test_cpu_training_uses_fast_dropout_and_leaves_frozen_embeddings_alone(
    make_cfg, toy_csv: Path, tiny_model_dir: Path
) -> None:
    from transformers import BertModel

    from textclf.model.speedups import FastDropout

    original = BertModel.from_pretrained(tiny_model_dir)
    for frozen, kept in (
        ("all", ("word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm")),
        ("word", ("word_embeddings",)),
    ):
        cfg = make_cfg(*toy_training(toy_csv), f"model.net.freeze_embeddings={frozen}", "debug=limit")
        _, objects = train(cfg)
        model = objects["model"]
        assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())
        assert any(isinstance(m, FastDropout) for m in model.modules())
        for name, weight in model.net.encoder.embeddings.named_parameters():
            unchanged = torch.equal(weight, original.embeddings.get_parameter(name))
            assert unchanged == name.startswith(kept), (frozen, name)
        assert not torch.equal(
            model.net.encoder.encoder.layer[0].output.dense.weight, original.encoder.layer[0].output.dense.weight
        )


def test_users_add_their_own_config_dir_through_the_search_path(make_cfg, toy_csv: Path, tmp_path: Path) -> None:
    mine = tmp_path / "myconf" / "data"
    mine.mkdir(parents=True)
    (mine / "toy.yaml").write_text(f"defaults:\n  - default\nsource: files\ntrain_file: {toy_csv}\nmax_length: 24\n")
    cfg = make_cfg(
        f"hydra.searchpath=[file://{tmp_path / 'myconf'}]", "data=toy", "debug=fdr", "trainer.precision=32-true"
    )
    assert cfg.data.source == "files" and cfg.data.max_length == 24 and cfg.data.batch_size == 32
    metrics, _ = train(cfg)
    assert "val/acc" in metrics


def test_a_bad_setting_is_refused_with_one_line_naming_the_key(make_cfg, toy_csv: Path) -> None:
    from textclf.errors import SettingError

    for override, line in (
        ("model.net.head=max", "model.net.head: 'max' is not a choice (native, pooler, cls, mean)"),
        ("model.net.freeze_embeddings=some", "model.net.freeze_embeddings: 'some' is not a choice (none, word, all)"),
    ):
        with pytest.raises(SettingError) as raised:
            make_cfg(*toy_training(toy_csv), override)
        assert str(raised.value) == line


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_training_on_a_gpu_learns_in_16_bit_mixed_precision(make_cfg, toy_csv: Path, precision: str) -> None:
    cfg = make_cfg(*toy_training(toy_csv), "trainer=gpu", f"trainer.precision={precision}")
    metrics, objects = train(cfg)
    assert objects["trainer"].strategy.root_device.type == "cuda"
    assert metrics["test/acc"] >= 0.9, metrics


@pytest.mark.long
def test_compiled_encoder_trains_and_its_checkpoint_loads_uncompiled(make_cfg, toy_csv: Path) -> None:
    cfg = make_cfg(*toy_training(toy_csv), "model.compile=true", "trainer.max_epochs=2")
    metrics, objects = train(cfg)
    restored = load_lit_module(objects["trainer"].checkpoint_callback.best_model_path)
    assert metrics["test/acc"] >= 0.9 and restored.id2label == {0: "negative", 1: "positive"}


@pytest.mark.slow
def test_the_same_seed_and_config_give_the_same_metrics(make_cfg, toy_csv: Path, tmp_path: Path) -> None:
    first = make_cfg(*toy_training(toy_csv), "trainer.max_epochs=2", "seed=7")
    metrics_first, _ = train(first)
    saved_first = json.loads((Path(first.paths.output_dir) / "metrics.json").read_text())
    again, _ = train(make_cfg(*toy_training(toy_csv), "trainer.max_epochs=2", "seed=7"))
    assert again == metrics_first
    other, _ = train(make_cfg(*toy_training(toy_csv), "trainer.max_epochs=2", "seed=8"))
    assert other["val/loss"] != metrics_first["val/loss"]  # the seed does reach the training
    assert {k: v for k, v in saved_first.items() if k != "best_model_path"} == metrics_first
