"""The memory levers for large encoders: LoRA adapters, gradient checkpointing, gradient accumulation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import toy_reviews, toy_training
from transformers import pipeline

from textclf.export.exporter import export
from textclf.inference.predictor import Predictor
from textclf.model.network import build_network
from textclf.training.fit import train
from textclf.training.lit_module import load_lit_module

# epochs of the LoRA toy run: on a frozen random encoder the adapters need this many to learn the keyword
LORA_EPOCHS = 20


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from conftest import compose_cfg

    root = tmp_path_factory.mktemp("lora")
    csv = root / "reviews.csv"
    toy_reviews(600).to_csv(csv, index=False)
    cfg = compose_cfg(
        root / "run",
        tiny_model_dir,
        *toy_training(csv),
        "memory=lora",
        "model.lr=1e-2",
        f"trainer.max_epochs={LORA_EPOCHS}",
        "callbacks.early_stopping=null",
    )
    metrics, objects = train(cfg)
    return root, csv, metrics, objects


@pytest.mark.slow
def test_lora_trains_adapters_and_head_only_and_its_checkpoint_holds_just_those(lora_run) -> None:
    _, _, metrics, objects = lora_run
    assert metrics["test/acc"] >= 0.8, metrics  # a frozen random encoder: adapters and head learn the keyword
    net = objects["model"].net
    trained = {name for name, parameter in net.named_parameters() if parameter.requires_grad}
    assert trained and all("lora_" in name or name.startswith("model.classifier.") for name in trained)
    share = sum(p.numel() for p in net.parameters() if p.requires_grad) / sum(p.numel() for p in net.parameters())
    assert share < 0.15
    checkpoint = torch.load(objects["trainer"].checkpoint_callback.best_model_path, weights_only=True)
    weights = {key for key in checkpoint["state_dict"] if key.startswith("net.")}
    assert weights == {f"net.{name}" for name in trained}
    assert checkpoint["network"]["peft"] == "lora"


@pytest.mark.slow
def test_a_lora_checkpoint_predicts_resumes_and_exports_merged(lora_run, tiny_model_dir: Path) -> None:
    root, csv, metrics, objects = lora_run
    best = objects["trainer"].checkpoint_callback.best_model_path
    texts = toy_reviews(40, seed=3)["text"].tolist()
    model = objects["model"]  # tested: it holds the best checkpoint's weights
    expected = Predictor(model, precision="32-true").predict_proba(texts)
    restored = Predictor(load_lit_module(best), precision="32-true")
    np.testing.assert_allclose(restored.predict_proba(texts), expected, atol=1e-6)

    from conftest import compose_cfg

    exported = export(
        compose_cfg(
            root / "export", None, f"ckpt_path={best}", "format=hf", f"output_dir={root / 'hf'}", config="export"
        )
    )
    assert not any("lora" in path.name for path in exported.iterdir())
    classify = pipeline("text-classification", model=str(exported), top_k=None)
    for row, probabilities in zip(classify(texts), expected):
        scores = {item["label"]: item["score"] for item in row}
        assert [scores[name] for name in restored.id2label.values()] == pytest.approx(probabilities.tolist(), abs=1e-4)

    last = Path(best).parent / "last.ckpt"
    steps = torch.load(last, weights_only=True)["global_step"]
    cfg = compose_cfg(
        root / "more",
        tiny_model_dir,
        *toy_training(csv),
        "memory=lora",
        "model.lr=1e-2",
        f"trainer.max_epochs={LORA_EPOCHS + 1}",
        "callbacks.early_stopping=null",
        f"ckpt_path={last}",
    )
    more, objects = train(cfg)  # fits on from the LoRA checkpoint: one more epoch of 30 steps
    assert objects["trainer"].global_step == steps + 30
    assert more["test/acc"] >= metrics["test/acc"] - 0.1


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_model_dir: Path) -> None:
    def build(checkpointing: bool) -> torch.nn.Module:
        torch.manual_seed(0)
        return build_network(
            2,
            pretrained=str(tiny_model_dir),
            dropout=0.0,
            attention_dropout=0.0,
            hidden_dropout=0.0,
            freeze_embeddings="none",
            gradient_checkpointing=checkpointing,
        )

    plain, checkpointed = build(False), build(True)
    assert checkpointed.encoder.is_gradient_checkpointing and not plain.encoder.is_gradient_checkpointing
    ids = torch.randint(5, 30, (4, 12))
    mask = torch.ones_like(ids)
    for net in (plain, checkpointed):
        net(ids, mask).pow(2).sum().backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.slow
def test_accumulated_batches_make_one_optimizer_step_and_the_schedule_counts_those(make_cfg, toy_csv: Path) -> None:
    # the command line's batch size wins over the preset's: set it back to the preset's 8
    _, objects = train(
        make_cfg(*toy_training(toy_csv), "memory=accumulate", "trainer.max_epochs=2", "data.batch_size=8")
    )
    trainer = objects["trainer"]
    assert trainer.accumulate_grad_batches == 4 and objects["datamodule"].hparams.batch_size == 8
    assert trainer.global_step == 2 * 15  # 480 rows: 60 batches of 8, 15 optimizer steps an epoch
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.last_epoch == trainer.global_step  # warm-up and decay over optimizer steps
    assert scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-9)  # the decay ends with the last step


@pytest.mark.slow
def test_lora_on_a_pooled_head_trains_and_its_checkpoint_quantizes_and_exports_to_onnx(
    make_cfg, toy_csv: Path, tmp_path: Path
) -> None:
    from conftest import compose_cfg

    cfg = make_cfg(
        *toy_training(toy_csv),
        "memory=lora",
        "model.lr=1e-2",
        "model.net.head=cls",
        "trainer.max_epochs=2",
        "callbacks.early_stopping=null",
    )
    _, objects = train(cfg)
    best = objects["trainer"].checkpoint_callback.best_model_path
    texts = toy_reviews(30, seed=4)["text"].tolist()
    expected = Predictor.from_checkpoint(best, precision="32-true").predict_proba(texts)
    np.testing.assert_allclose(
        Predictor(objects["model"], precision="32-true").predict_proba(texts), expected, atol=1e-5
    )  # the adapters merged on loading compute what they did unmerged
    quantized = Predictor.from_checkpoint(best, quantize=True).predict_proba(texts)
    # int8 products stay close to fp32 (after 2 epochs the classes are near ties, so argmax agreement would be luck)
    np.testing.assert_allclose(quantized, expected, atol=0.05)
    onnx_dir = export(
        compose_cfg(
            tmp_path / "o", None, f"ckpt_path={best}", "format=onnx", f"output_dir={tmp_path / 'onnx'}", config="export"
        )
    )
    assert (onnx_dir / "model.onnx").is_file()  # the export checks itself against PyTorch


def test_a_frozen_layer_the_pretrained_weights_lack_trains_under_lora_and_is_kept(tmp_path: Path) -> None:
    """A BERT saved without its pooler: under LoRA the new pooler trains in full, so checkpoints keep it."""
    from conftest import VOCAB
    from transformers import BertConfig, BertModel, BertTokenizer

    directory = tmp_path / "no-pooler"
    BertTokenizer(vocab={word: index for index, word in enumerate(VOCAB)}).save_pretrained(directory)
    BertModel(
        BertConfig(
            vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
        ),
        add_pooling_layer=False,
    ).save_pretrained(directory)
    net = build_network(2, pretrained=str(directory), peft="lora")
    trained = {name for name, parameter in net.named_parameters() if parameter.requires_grad}
    assert {"model.bert.pooler.dense.weight", "model.classifier.weight"} <= trained


def test_explicit_class_weights_train_and_their_checkpoint_loads(make_cfg, toy_csv: Path) -> None:
    _, objects = train(make_cfg(*toy_training(toy_csv), "trainer.max_epochs=1", "model.class_weights=[1.0,3.0]"))
    assert objects["model"].loss.weight.tolist() == [1.0, 3.0]
    last = Path(objects["trainer"].checkpoint_callback.dirpath) / "last.ckpt"
    assert load_lit_module(last).loss.weight.tolist() == [1.0, 3.0]
