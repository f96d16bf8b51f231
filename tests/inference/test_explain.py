"""Token attributions (`explain_texts`, `textclf-explain`): integrated gradients' completeness, offsets that
point at the characters (pairs and windows too), the order of tokens kept under bf16, every model shape,
one-line errors, and the HTML page opened in a real headless Chromium."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    NEGATIVE,
    POSITIVE,
    best_checkpoint,
    compose_cfg,
    evaluate_on_file,
    save_tiny_bert,
    toy_reviews,
)

from textclf.data.tokenization import load_tokenizer
from textclf.errors import SettingError
from textclf.inference.explaining import explain
from textclf.inference.explanation import explain_texts
from textclf.inference.predictor import Predictor
from textclf.model.loading import load_trained
from textclf.model.lora import merge_lora
from textclf.model.network import build_network
from textclf.model.trained import TrainedClassifier
from textclf.running import run_command
from textclf.validation import SettingsError

pytest.importorskip("captum")


def tiny_classifier(model_dir: Path, labels: int = 2, data: dict | None = None, **hparams) -> TrainedClassifier:
    """An untrained tiny classifier with the given settings, as `load_trained` would return it."""
    net = build_network(labels, pretrained=str(model_dir), peft=hparams.pop("peft", None))
    merge_lora(net)
    settings = {"id2label": {i: f"label{i}" for i in range(labels)}} | hparams
    return TrainedClassifier(net, settings, data or {"max_length": 64}, load_tokenizer(str(model_dir))).eval()


def baseline_text(record: dict) -> str:
    """A text of as many [PAD]s as the record has tokens: the tokenizer reads it as the baseline's ids."""
    return " ".join(["[PAD]"] * len(record["tokens"]))


def words_of(record: dict) -> list[str]:
    """The characters each token's offsets point at, in the text its segment names."""
    texts = [record["text"], record.get("text_pair")]
    segments = record.get("segment") or [0] * len(record["tokens"])
    return [texts[segment][start:end] for (start, end), segment in zip(record["offsets"], segments)]


@pytest.fixture(scope="module")
def toy_model(trained_toy) -> TrainedClassifier:
    return load_trained(best_checkpoint(trained_toy))


@pytest.fixture(scope="module")
def lively_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT with weights drawn 10 times wider (initializer_range 0.2): its predictions move with
    the words, so a 1 % completeness check means something. (A default tiny BERT predicts nearly the same
    for every text; the trained toy model is too saturated for few steps: 0.002 to 0.998 in the last few
    percent of the path.)"""
    torch.manual_seed(0)
    return save_tiny_bert(tmp_path_factory.mktemp("lively-bert"), initializer_range=0.2)


def scaled_head(model: TrainedClassifier) -> TrainedClassifier:
    with torch.no_grad():
        model.net.model.classifier.weight.mul_(10)
    return model


def test_integrated_gradients_sum_to_the_change_from_the_baseline(lively_model_dir: Path) -> None:
    model = scaled_head(tiny_classifier(lively_model_dir))
    texts = toy_reviews(24, seed=3)["text"].tolist()
    records = explain_texts(model, texts, precision="32-true", batch_size=100)  # 3 texts a pass
    predictor = Predictor(model, precision="32-true")
    changes = []
    for record in records:
        label = int(record["target"].removeprefix("label"))
        change = record["probabilities"][record["target"]] - predictor.predict_proba([baseline_text(record)])[0, label]
        assert abs(sum(record["attributions"]) - change) <= 0.01 * abs(change) + 1e-6, record["text"]
        assert abs(record["completeness_delta"]) <= 0.01 * abs(change) + 1e-6
        assert words_of(record) == record["text"].split()  # the toy vocabulary: one token per word
        changes.append(abs(change))
    assert np.median(changes) > 1e-2


def reviews_away_from_the_baseline(model: TrainedClassifier, count: int, seed: int) -> tuple[list[str], list[str]]:
    """Toy reviews of the class the baseline (all [PAD]) is not, and that class's sentiment words. The
    saturated toy model calls its baseline one class at 0.99 or more (which one depends on the training
    run): for a review of that class f(text) - f(baseline) is about 0 and no token has anything to explain."""
    baseline = Predictor(model, precision="32-true").predict_proba([" ".join(["[PAD]"] * 8)])[0]
    away = "negative" if model.id2label[int(np.argmax(baseline))] == "positive" else "positive"
    frame = toy_reviews(count, seed=seed)
    return frame["text"][frame["label"] == away].tolist(), POSITIVE if away == "positive" else NEGATIVE


def test_the_model_looks_at_the_sentiment_word_and_bf16_keeps_the_order(toy_model) -> None:
    texts, sentiment_words = reviews_away_from_the_baseline(toy_model, 100, seed=4)
    steps = {"n_steps": 256, "batch_size": 4096}  # the toy model is saturated: see lively_model_dir
    full = explain_texts(toy_model, texts, precision="32-true", **steps)
    half = explain_texts(toy_model, texts, precision="bf16-mixed", **steps)
    top = [record["tokens"][int(np.argmax(record["attributions"]))] for record in full]
    assert all(record["label"] == record["target"] for record in full) and len(texts) >= 20
    # chance: one token in six is a sentiment word; the toy model, trained anew each run, once scored 0.89
    assert np.mean([token in sentiment_words for token in top]) >= 0.8
    same_top, correlations = [], []
    for one, other in zip(full, half):
        same_top.append(np.argmax(one["attributions"]) == np.argmax(other["attributions"]))
        ranks = [pd.Series(record["attributions"]).rank() for record in (one, other)]
        correlations.append(ranks[0].corr(ranks[1]) if len(ranks[0]) > 2 else 1.0)
    assert np.mean(same_top) >= 0.95 and np.median(correlations) >= 0.8


def test_occlusion_finds_the_sentiment_word_and_gradient_x_input_runs(toy_model) -> None:
    """Occlusion measures what deleting each token does; gradient x input reads the gradient at the text
    only, which saturation (p = 0.9999 here) flattens, so on the toy model it is checked for its shape."""
    texts, sentiment_words = reviews_away_from_the_baseline(toy_model, 40, seed=5)
    for method in ("gradient_x_input", "occlusion"):
        records = explain_texts(toy_model, texts, method=method, precision="32-true")
        assert all(record["completeness_delta"] is None and record["method"] == method for record in records)
        assert all(len(record["attributions"]) == len(record["text"].split()) for record in records)
    top = [record["tokens"][int(np.argmax(record["attributions"]))] for record in records]
    assert np.mean([token in sentiment_words for token in top]) >= 0.9


def gradient_times(model: TrainedClassifier, text: str, label: int, baseline_id: int) -> tuple[np.ndarray, np.ndarray]:
    """By hand with torch.autograd, the gradient of the label's probability with respect to the text's word
    embeddings times (input − baseline) (the baseline: [CLS] and [SEP] kept, every other token `baseline_id`)
    and times the input alone; one number per token between [CLS] and [SEP]."""
    layer = model.net.encoder.get_input_embeddings()
    ids = torch.tensor([model.tokenizer(text)["input_ids"]])
    baseline = ids.clone()
    baseline[0, 1:-1] = baseline_id
    embeddings = layer(ids).detach().requires_grad_(True)
    hook = layer.register_forward_hook(lambda module, inputs, output: embeddings)
    try:
        probability = model.task.probabilities(model(ids, torch.ones_like(ids)))[0, label]
    finally:
        hook.remove()
    (gradient,) = torch.autograd.grad(probability, embeddings)
    with torch.no_grad():
        difference, alone = (gradient * (embeddings - layer(baseline))), gradient * embeddings
    return difference.sum(-1)[0, 1:-1].double().numpy(), alone.sum(-1)[0, 1:-1].double().numpy()


@pytest.mark.parametrize("baseline", ["pad", "mask"])
def test_gradient_x_input_is_the_gradient_times_the_difference_from_the_baseline(
    lively_model_dir: Path, baseline: str
) -> None:
    torch.manual_seed(0)  # the new head's weights and the [PAD] embedding below
    model = scaled_head(tiny_classifier(lively_model_dir))
    tokenizer = model.tokenizer
    with torch.no_grad():  # a random BERT's [PAD] embedding is zero; a pretrained one's need not be (MiniLM's is not)
        model.net.encoder.get_input_embeddings().weight[tokenizer.pad_token_id].normal_(0, 0.2)
    baseline_id = tokenizer.pad_token_id if baseline == "pad" else tokenizer.mask_token_id
    texts = toy_reviews(6, seed=7)["text"].tolist()  # of several lengths: padded in one batch
    records = explain_texts(model, texts, method="gradient_x_input", baseline=baseline, precision="32-true")
    assert len({len(record["tokens"]) for record in records}) > 1
    by_hand = [
        gradient_times(model, text, int(r["target"].removeprefix("label")), baseline_id)
        for text, r in zip(texts, records)
    ]
    scale = max(np.abs(expected).max() for expected, _ in by_hand)
    assert scale > 1e-3  # gradients that say something
    for record, (expected, times_input) in zip(records, by_hand):
        # the records keep 5 significant digits
        np.testing.assert_allclose(record["attributions"], expected, rtol=1e-4, atol=1e-7 * scale)
        assert np.abs(times_input - expected).max() > 1e-2 * np.abs(expected).max()  # not gradient × input alone


def test_windows_are_stitched_into_one_attribution_per_token_of_the_whole_text(lively_model_dir: Path) -> None:
    windows = {"long_texts": "window", "max_length": 12, "window_stride": 3}
    model = scaled_head(tiny_classifier(lively_model_dir, data=windows))
    text = " ".join(toy_reviews(8, seed=6)["text"])  # about 100 tokens: a dozen windows of 12
    (record,) = explain_texts(model, [text], precision="32-true", batch_size=64)  # several passes of 2 steps
    assert words_of(record) == text.split() and len(record["attributions"]) == len(text.split())
    predictor = Predictor(model, precision="32-true")
    label = int(record["target"].removeprefix("label"))
    change = predictor.predict_proba([text])[0, label] - predictor.predict_proba([baseline_text(record)])[0, label]
    assert abs(change) > 1e-4 and abs(sum(record["attributions"]) - change) <= 0.01 * abs(change) + 1e-6
    with pytest.raises(SettingError, match="method=occlusion .* for texts within max_length"):
        explain_texts(model, [text], method="occlusion")


def test_pairs_multi_label_regression_lora_and_calibration(tiny_model_dir: Path) -> None:
    pairs = tiny_classifier(tiny_model_dir, data={"max_length": 64, "text_pair_column": "b"}, temperature=2.0)
    (record,) = explain_texts(pairs, ["a good film"], ["the plot was dull !"], precision="32-true")
    assert record["segment"] == [0, 0, 0, 1, 1, 1, 1, 1] and record["text_pair"] == "the plot was dull !"
    assert words_of(record) == ["a", "good", "film", "the", "plot", "was", "dull", "!"]
    calibrated = Predictor(pairs, precision="32-true").predict_proba(["a good film"], pairs=["the plot was dull !"])
    assert list(record["probabilities"].values()) == pytest.approx(calibrated[0].tolist(), abs=1e-5)

    multi = tiny_classifier(tiny_model_dir, labels=3, multi_label=True, threshold=0.01, peft="lora")
    (record,) = explain_texts(multi, ["great acting"], precision="32-true")
    assert record["target"] == ["label0", "label1", "label2"] == record["label"]
    assert set(record["attributions"]) == set(record["completeness_delta"]) == set(record["target"])

    regression = tiny_classifier(tiny_model_dir, labels=1, task="regression", target_mean=50.0, target_std=10.0)
    texts = ["superb film", "an awful and boring plot"]
    records = explain_texts(regression, texts, precision="32-true")
    scores = Predictor(regression, precision="32-true").predict_proba(texts + [baseline_text(r) for r in records])
    for number, record in enumerate(records):
        assert record["score"] == pytest.approx(float(scores[number, 0]), abs=1e-4) and 30 < record["score"] < 70
        change = scores[number, 0] - scores[number + 2, 0]
        assert abs(sum(record["attributions"]) - change) <= 0.01 * abs(change) + 1e-5


def test_unknown_targets_and_methods_are_one_line_errors(toy_model, trained_toy, tmp_path: Path, capsys) -> None:
    with pytest.raises(SettingError, match=r"target='neutral' is not a label of this model \(negative, positive"):
        explain_texts(toy_model, ["a good film"], target="neutral")
    source = tmp_path / "texts.txt"
    source.write_text("a good film\n")
    settings = (f"ckpt_path={best_checkpoint(trained_toy)}", f"input={source}", f"output={tmp_path / 'out.jsonl'}")
    with pytest.raises(SettingsError, match=r"method: 'shap' is not a choice \(integrated_gradients, gradient_x_input"):
        compose_cfg(tmp_path / "x", None, *settings, "method=shap", config="explain")  # the schema, before any work
    cfg = compose_cfg(tmp_path / "x", None, *settings, "target=neutral", config="explain")
    with pytest.raises(SystemExit) as exit_code:
        run_command(explain, cfg)
    error = capsys.readouterr().err.strip().splitlines()
    assert exit_code.value.code == 2 and len(error) == 1
    assert error[0].startswith("textclf: error: target='neutral' is not a label of this model")
    assert not (tmp_path / "out.jsonl").exists()


def headless(browser: str, profile: Path, *arguments: str) -> subprocess.CompletedProcess:
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    return subprocess.run([browser, *flags, *arguments], capture_output=True, text=True, timeout=120)


def test_the_html_page_shows_every_text_with_coloured_tokens_in_chromium(trained_toy, tmp_path: Path) -> None:
    texts = toy_reviews(60, seed=7)["text"].tolist()
    texts[0] = 'a <b>good</b> film & "fine" acting'  # markup in a text is shown, never run
    source = tmp_path / "reviews.csv"
    pd.DataFrame({"review": texts}).to_csv(source, index=False)
    page = tmp_path / "report.html"
    overrides = (f"ckpt_path={best_checkpoint(trained_toy)}", f"input={source}", f"output={page}", "text_column=review")
    stats = explain(compose_cfg(tmp_path / "x", None, *overrides, "chunk_size=25", config="explain"))
    assert stats["texts"] == 60 and "cdn" not in page.read_text().lower() and "<script src" not in page.read_text()
    browser = CHROMIUM
    if browser is None:
        pytest.skip("no Chromium here (.ci/run installs Debian's chromium)")
    dom = headless(browser, tmp_path / "profile", "--dump-dom", page.as_uri()).stdout
    assert dom.count("<article") == 60 and "page 1 of 2 (60 texts)" in dom  # the script ran: 50 per page
    assert dom.count('<mark class="p"') >= 60 and dom.count('<mark class="n"') >= 10
    plain = dom.replace("<mark", "\0<mark")
    for text in texts[1:]:
        for word in text.split():
            assert f">{word}</mark>" in plain
    assert "&lt;" in dom and "&amp;" in dom and "<b>good</b>" not in dom
    shot = tmp_path / "page.png"
    headless(browser, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1000,900", page.as_uri())
    import matplotlib.image

    pixels = (matplotlib.image.imread(shot)[..., :3] * 255).astype(int)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    assert ((green - red > 40) & (green - blue > 40)).sum() > 200  # tokens towards the label
    assert ((red - green > 40) & (red - blue > 40)).sum() > 200  # tokens against it


def test_explain_writes_jsonl_and_eval_writes_misclassified_html(trained_toy, tmp_path: Path) -> None:
    source = tmp_path / "texts.txt"
    texts = toy_reviews(30, seed=8)["text"].tolist()
    source.write_text("\n".join(texts) + "\n")
    out = tmp_path / "explanations.jsonl"
    overrides = (f"ckpt_path={best_checkpoint(trained_toy)}", f"input={source}", f"output={out}", "chunk_size=7")
    explain(compose_cfg(tmp_path / "x", None, *overrides, "method=gradient_x_input", config="explain"))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["text"] for row in rows] == texts and all(len(r["tokens"]) == len(r["attributions"]) for r in rows)
    flipped = toy_reviews(80, seed=9)
    flipped["label"] = flipped["label"].map({"positive": "negative", "negative": "positive"})
    csv = tmp_path / "flipped.csv"
    flipped.to_csv(csv, index=False)
    evaluate_on_file(best_checkpoint(trained_toy), csv, tmp_path / "eval", "explain_misclassified=5")
    page = (tmp_path / "eval" / "misclassified.html").read_text()
    assert page.count("<article") == 5 and page.count("true <b>") == 5
