"""Shared fixtures: a tiny random BERT and tokenizer on disk, a learnable toy dataset, composed configs."""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import DictConfig
from transformers import BertConfig, BertModel, BertTokenizer

from textclf.config import compose_config
from textclf.export.exporter import export
from textclf.inference.evaluation import evaluate

TESTS = Path(__file__).resolve().parent  # on PYTHONPATH for subprocesses: conftest, crash, resume_runs
FIXTURES = TESTS / "fixtures"
# Lightning's packages: importing them would add 0.7 s to a one-line textclf-predict's 3.5 s
LIGHTNING = ("lightning", "lightning_fabric", "pytorch_lightning")
# cleaning and splitting options for the tests that call `splits.prepare` directly
SPLIT_OPTIONS = dict(
    multi_label=False,
    label_delimiter=None,
    empty_texts="drop",
    val_fraction=0.1,
    test_fraction=0.1,
    split_seed=7,
    max_train_examples=None,
)


def child_env() -> dict[str, str]:
    """The environment of a test's subprocess: tests/ put in front of PYTHONPATH (for conftest, crash,
    resume_runs), whatever was on it kept (where textclf or its dependencies come from a PYTHONPATH, as in
    scripts/gpu_check.py)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(TESTS), os.environ.get("PYTHONPATH"))))}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` are skipped, with the reason shown, where there is no CUDA GPU."""
    if torch.cuda.is_available():
        return
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


POSITIVE = ["good", "great", "fine", "superb", "lovely", "brilliant"]
NEGATIVE = ["bad", "awful", "poor", "dull", "terrible", "boring"]
FILLER = ["the", "movie", "film", "plot", "was", "a", "really", "story", "acting", "and", "it", "is", "quite", "very"]
# a WordPiece vocabulary for the tiny random models: the special tokens, then every word of the toy reviews
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER, "##s", "!"]


# a real headless Chromium for the pages' tests (Debian's chromium; .ci/run installs it), without the
# background connections a closed network refuses
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def save_tiny_bert(directory: Path, **config: float) -> Path:
    """A randomly initialised 2-layer BERT with a 40-word WordPiece vocabulary, saved like a hub model;
    `config` overrides BertConfig's defaults (e.g. initializer_range)."""
    # transformers 5 takes `vocab=` (a dict or a path); its old `vocab_file=` is ignored: every token [UNK]
    BertTokenizer(vocab={word: index for index, word in enumerate(VOCAB)}).save_pretrained(directory)
    settings = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    BertModel(BertConfig(vocab_size=len(VOCAB), max_position_embeddings=128, **settings | config)).save_pretrained(
        directory
    )
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT of `save_tiny_bert`, the same weights whichever test asks first (tests run in several
    processes, each in its own order)."""
    torch.manual_seed(0)
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_bf16_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT saved in bf16, as many hub models are (its config.json says so too)."""
    directory = tmp_path_factory.mktemp("tiny-bert-bf16")
    BertTokenizer.from_pretrained(tiny_model_dir).save_pretrained(directory)
    BertModel.from_pretrained(tiny_model_dir).to(torch.bfloat16).save_pretrained(directory)
    return directory


def toy_reviews(count: int, seed: int = 0) -> pd.DataFrame:
    """Sentences whose label is given by the one sentiment word they contain, at varied lengths."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.choice(["positive", "negative"])
        words = rng.choices(FILLER, k=rng.randint(2, 20))
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label == "positive" else NEGATIVE))
        rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


def toy_scores(count: int, seed: int = 0) -> pd.DataFrame:
    """Reviews scored 10 x (positive words - negative words) + 50: the score has its own scale and offset,
    which the model must give back (it trains on standardized targets)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        positive, negative = rng.randint(0, 2), rng.randint(0, 2)
        words = rng.choices(FILLER, k=rng.randint(1, 4)) + rng.choices(POSITIVE, k=positive)
        words += rng.choices(NEGATIVE, k=negative)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": 10.0 * (positive - negative) + 50})
    return pd.DataFrame(rows)


def toy_pairs(count: int, seed: int = 0) -> pd.DataFrame:
    """Two short reviews each with one sentiment word: `both` when both are positive, else `not`. Either
    text alone leaves the label open: a model that reads one text is right at most 3 times in 4."""
    rng = random.Random(seed)

    def review(positive: bool) -> str:
        words = rng.choices(FILLER, k=rng.randint(1, 4))
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if positive else NEGATIVE))
        return " ".join(words)

    rows = []
    for _ in range(count):
        first, second = rng.random() < 0.5, rng.random() < 0.5
        rows.append({"a": review(first), "b": review(second), "label": "both" if first and second else "not"})
    return pd.DataFrame(rows)


@pytest.fixture
def toy_csv(tmp_path: Path) -> Path:
    path = tmp_path / "reviews.csv"
    toy_reviews(600).to_csv(path, index=False)
    return path


def compose_cfg(run_dir: Path, model_dir: Path | str | None, *overrides: str, config: str = "train") -> DictConfig:
    """Compose a textclf config as its command would, quiet, writing into `run_dir`."""
    defaults = [f"paths.cache_dir={run_dir.parent / 'cache'}"]
    if config == "train":
        defaults += [
            "callbacks.progress_bar=null",
            "callbacks.model_summary=null",
            "+trainer.enable_progress_bar=false",
            "+trainer.enable_model_summary=false",
        ]
    if model_dir is not None:
        defaults.append(f"model.net.pretrained={model_dir}")
    return compose_config(config, [*defaults, *overrides], run_dir)


def evaluate_on_file(checkpoint: str | Path, csv: Path, run_dir: Path, *overrides: str) -> dict[str, float]:
    """`textclf-eval` of `checkpoint` on the CSV it was trained on (its test split, as training split it), in
    fp32 as training's test ran; `overrides` say how to read the file (columns, task)."""
    cfg = compose_cfg(
        run_dir,
        None,
        f"ckpt_path={checkpoint}",
        "data=files",
        f"data.train_file={csv}",
        *overrides,
        "precision=32-true",
        config="eval",
    )
    return evaluate(cfg)


def export_checkpoint(checkpoint: str | Path, kind: str, tmp_path: Path) -> Path:
    """`textclf-export format=kind` (hf or onnx) of `checkpoint` into `tmp_path / kind`."""
    overrides = (f"ckpt_path={checkpoint}", f"format={kind}", f"output_dir={tmp_path / kind}")
    return export(compose_cfg(tmp_path / "x", None, *overrides, config="export"))


def toy_training(csv: Path) -> tuple[str, ...]:
    """Overrides that make the tiny model learn the toy reviews in a few seconds (its random word
    embeddings must learn too, unlike a pretrained model's)."""
    return (
        "data=files",
        f"data.train_file={csv}",
        "model.lr=3e-3",
        "trainer.max_epochs=4",
        "data.batch_size=16",
        "trainer.precision=32-true",
        "model.net.freeze_embeddings=none",
    )


@pytest.fixture
def make_cfg(tiny_model_dir: Path, tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose `train.yaml` as `textclf-train` would, pointed at the tiny model and a temp run dir."""

    def make(*overrides: str, model_dir: Path | str | None = tiny_model_dir) -> DictConfig:
        return compose_cfg(tmp_path / "run", model_dir, *overrides)

    return make


@pytest.fixture(scope="session")
def trained_toy(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[DictConfig, dict, dict]:
    """One tiny model trained on the toy reviews, shared by the evaluation, prediction and export tests."""
    from textclf.training.fit import train

    root = tmp_path_factory.mktemp("trained")
    csv = root / "reviews.csv"
    toy_reviews(600).to_csv(csv, index=False)
    cfg = compose_cfg(root / "run", tiny_model_dir, *toy_training(csv), "callbacks.early_stopping=null")
    metrics, objects = train(cfg)
    return cfg, metrics, objects


def best_checkpoint(trained_toy) -> str:
    return trained_toy[2]["trainer"].checkpoint_callback.best_model_path
