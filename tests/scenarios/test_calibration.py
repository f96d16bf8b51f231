"""Temperature scaling and per-label tuned thresholds: fitted on validation after training, carried by the
best checkpoint, used by eval, predict and export."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import (
    FILLER,
    NEGATIVE,
    POSITIVE,
    compose_cfg,
    evaluate_on_file,
    export_checkpoint,
    toy_reviews,
    toy_training,
)
from transformers import AutoConfig, pipeline

from textclf.errors import SettingError
from textclf.inference.prediction import predict
from textclf.inference.predictor import Predictor
from textclf.model import calibration
from textclf.model.loading import read_checkpoint
from textclf.training.lit_module import load_lit_module


def test_temperature_scaling_lowers_nll_and_ece_of_an_over_confident_model_and_keeps_its_answers() -> None:
    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 3, (3000,), generator=generator)
    logits = torch.randn(3000, 3, generator=generator)
    logits[torch.arange(3000), targets] += 1.0
    logits *= 4  # over-confident: the right scores, four times too sharp
    temperature = calibration.fit_temperature(logits, targets, multi_label=False)
    assert 3.0 < temperature < 5.0
    assert calibration.nll(logits / temperature, targets, False) < calibration.nll(logits, targets, False) - 0.3
    before = calibration.expected_calibration_error(calibration.raw_probabilities(logits, False), targets, False)
    after = calibration.expected_calibration_error(
        calibration.raw_probabilities(logits, False, temperature), targets, False
    )
    assert before > 0.15 and after < 0.05
    assert torch.equal((logits / temperature).argmax(1), logits.argmax(1))


def test_tuned_thresholds_beat_one_half_on_a_skewed_multi_label_set() -> None:
    generator = torch.Generator().manual_seed(1)
    targets = (torch.rand(2000, 3, generator=generator) < torch.tensor([0.03, 0.2, 0.6])).float()
    logits = torch.randn(2000, 3, generator=generator) + 2.0 * targets - 2.0  # rare labels stay under 0.5
    probabilities = logits.sigmoid()
    thresholds = calibration.tune_thresholds(probabilities, targets)
    assert all(0 < t < 1 for t in thresholds) and thresholds[0] < 0.5
    at_half = calibration.f1_scores(probabilities >= 0.5, targets)
    tuned = calibration.f1_scores(probabilities >= torch.tensor(thresholds), targets)
    assert tuned[0] > at_half[0] + 0.05 and tuned[1] > at_half[1]
    # on these examples, no single threshold per label does better
    for label, threshold in enumerate(thresholds):
        best = calibration.f1_scores(probabilities[:, label : label + 1] >= threshold, targets[:, label : label + 1])
        for other in np.linspace(0.01, 0.99, 99):
            f1 = calibration.f1_scores(probabilities[:, label : label + 1] >= other, targets[:, label : label + 1])
            assert f1[0] <= best[0] + 1e-9


def test_calibration_settings_are_refused_with_one_line(make_cfg, toy_csv: Path) -> None:
    cases = {
        "model.threshold=1.5": "model.threshold: 1.5 is not allowed (a number in (0, 1), or tuned)",
        "model.threshold=best": "model.threshold: 'best' is not allowed (a number in (0, 1), or tuned)",
        "model.threshold=tuned": "model.threshold: tuned tunes one threshold per label, data.multi_label=false "
        "(set it true, or 0.5)",
        "model.calibrate=maybe": "model.calibrate: 'maybe' is not true or false (true or false)",
        "data.task=regression model.calibrate=true": "model.calibrate: true scales class probabilities, "
        "data.task=regression has none (false)",
    }
    for overrides, message in cases.items():
        with pytest.raises(SettingError) as raised:
            make_cfg(*toy_training(toy_csv), *overrides.split())
        assert str(raised.value) == message


@pytest.fixture(scope="module")
def calibrated_toy(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    """The tiny model, trained to over-fit the toy reviews (many epochs, no early stop), then calibrated."""
    from textclf.training.fit import train

    root = tmp_path_factory.mktemp("calibrated")
    csv = root / "reviews.csv"
    toy_reviews(400).to_csv(csv, index=False)
    overrides = (*toy_training(csv), "trainer.max_epochs=6", "callbacks.early_stopping=null", "model.calibrate=true")
    metrics, objects = train(compose_cfg(root / "run", tiny_model_dir, *overrides))
    return metrics, objects["trainer"].checkpoint_callback.best_model_path, csv


@pytest.mark.slow
def test_a_calibrated_checkpoint_carries_its_temperature_to_eval_predict_and_export(
    calibrated_toy, tmp_path: Path
) -> None:
    metrics, checkpoint, csv = calibrated_toy
    temperature = metrics["temperature"]
    assert temperature != 1.0 and metrics["val/ece_calibrated"] <= metrics["val/ece"] + 1e-3
    assert {"test/ece", "test/ece_calibrated"} <= set(metrics)
    assert read_checkpoint(checkpoint)["hyper_parameters"]["temperature"] == pytest.approx(temperature)
    saved = json.loads((Path(checkpoint).parent.parent / "metrics.json").read_text())
    assert saved["temperature"] == pytest.approx(temperature)

    texts = toy_reviews(40, seed=5)["text"].tolist()
    predictor = Predictor.from_checkpoint(checkpoint, precision="32-true")
    logits = predictor.text_logits(texts)
    probabilities = predictor.probabilities(logits)
    np.testing.assert_allclose(probabilities, torch.from_numpy(logits / temperature).softmax(-1).numpy(), atol=1e-6)

    out = tmp_path / "predictions.csv"
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(texts) + "\n")
    predict(
        compose_cfg(
            tmp_path / "p",
            None,
            f"ckpt_path={checkpoint}",
            f"input={source}",
            f"output={out}",
            "precision=32-true",
            config="predict",
        )
    )
    written = pd.read_csv(out)[[f"prob_{name}" for name in predictor.id2label.values()]].to_numpy()
    np.testing.assert_allclose(written, probabilities, atol=2e-6)

    evaluated = evaluate_on_file(checkpoint, csv, tmp_path / "eval")
    assert evaluated["test/ece"] == pytest.approx(metrics["test/ece"], abs=1e-4)
    assert evaluated["test/ece_calibrated"] == pytest.approx(metrics["test/ece_calibrated"], abs=1e-4)
    assert evaluated["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-4)
    assert (tmp_path / "eval" / "reliability_diagram.png").stat().st_size > 1000

    directory = export_checkpoint(checkpoint, "hf", tmp_path)
    classifier = pipeline("text-classification", model=str(directory), device="cpu", top_k=None)
    for answers, row in zip(classifier(texts), probabilities):
        scores = {answer["label"]: answer["score"] for answer in answers}
        np.testing.assert_allclose([scores[name] for name in predictor.id2label.values()], row, atol=1e-4)
    assert f"temperature of {temperature:.4f}" in (directory / "README.md").read_text()


def toy_tags(count: int, seed: int = 0) -> pd.DataFrame:
    """Reviews tagged `praise` when they hold a positive word and `complaint` when they hold a negative one
    (both, or either); complaints are rare (about 15 %)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        words = rng.choices(FILLER, k=rng.randint(2, 12))
        complaint = rng.random() < 0.15
        praise = not complaint or rng.random() < 0.5
        words += [rng.choice(POSITIVE)] * praise + [rng.choice(NEGATIVE)] * complaint
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": "|".join(["praise"] * praise + ["complaint"] * complaint)})
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_tuned_thresholds_are_stored_in_the_best_checkpoint_and_used_by_predict_eval_and_export(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from textclf.training.fit import train

    csv = tmp_path / "tags.csv"
    toy_tags(400).to_csv(csv, index=False)
    overrides = (
        *toy_training(csv),
        "trainer.max_epochs=2",
        "data.multi_label=true",
        "data.label_delimiter=|",
        "model.threshold=tuned",
        "callbacks.early_stopping=null",
    )
    metrics, objects = train(compose_cfg(tmp_path / "run", tiny_model_dir, *overrides))
    checkpoint = objects["trainer"].checkpoint_callback.best_model_path
    thresholds = metrics["thresholds"]
    assert len(thresholds) == 2 and metrics["temperature"] == 1.0 and "val/ece_calibrated" not in metrics
    assert metrics["val/f1_tuned"] >= metrics["val/f1_untuned"] - 1e-9
    assert {"test/f1_untuned", "test/f1_micro_untuned", "test/ece"} <= set(metrics)
    assert read_checkpoint(checkpoint)["hyper_parameters"]["thresholds"] == pytest.approx(thresholds)

    model = load_lit_module(checkpoint)
    assert model.task.thresholds.tolist() == pytest.approx(thresholds)
    predictor = Predictor(model, precision="32-true")
    texts = toy_tags(60, seed=3)["text"].tolist()
    probabilities = predictor.predict_proba(texts)
    names = list(predictor.id2label.values())
    expected = [[names[i] for i in range(2) if row[i] >= thresholds[i]] for row in probabilities]
    assert predictor.labels_of(probabilities) == expected

    evaluated = evaluate_on_file(checkpoint, csv, tmp_path / "eval", "data.multi_label=true", "data.label_delimiter=|")
    for key in ("test/f1", "test/f1_micro", "test/acc"):  # the test of training used the tuned thresholds too
        assert evaluated[key] == pytest.approx(metrics[key], abs=1e-4), key

    directory = export_checkpoint(checkpoint, "hf", tmp_path)
    assert AutoConfig.from_pretrained(directory).textclf_thresholds == pytest.approx(thresholds, abs=1e-6)
    assert "config.textclf_thresholds" in (directory / "README.md").read_text()


def test_a_checkpoint_without_calibration_has_temperature_one_and_the_fixed_threshold(trained_toy) -> None:
    cfg, _, objects = trained_toy
    path = objects["trainer"].checkpoint_callback.best_model_path
    hparams = read_checkpoint(path)["hyper_parameters"]
    assert hparams.get("thresholds") is None and hparams.get("temperature", 1.0) == 1.0
    model = load_lit_module(path)
    assert model.task.temperature == 1.0
    logits = torch.randn(4, 2)
    assert torch.equal(model.task.outputs(logits), logits)


def test_a_missing_positive_label_keeps_the_default_threshold() -> None:
    probabilities = torch.tensor([[0.9, 0.2], [0.1, 0.3], [0.6, 0.4]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    thresholds = calibration.tune_thresholds(probabilities, targets)
    assert thresholds[1] == 0.5 and thresholds[0] == pytest.approx(0.35)
