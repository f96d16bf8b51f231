"""Every common encoder architecture trains with every head, its speed-ups are exact, and its checkpoint
evaluates, predicts and exports (Hugging Face directory and ONNX) with the same answers.

Each architecture is a tiny random model built from its config, with a WordPiece tokenizer saved beside it.
The full matrix is `slow`; BERT and DeBERTa-v2 (one BERT-style encoder, one that is not) run in the fast set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import VOCAB, compose_cfg, toy_reviews, toy_training
from transformers import AutoConfig, AutoModel, BertTokenizer, pipeline

from textclf.export.exporter import export
from textclf.inference.evaluation import evaluate
from textclf.inference.predictor import Predictor
from textclf.model.network import build_network
from textclf.training.fit import train

SMALL = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 160,
    "vocab_size": len(VOCAB),
    "pad_token_id": 0,
}
ARCHITECTURES = {
    "bert": SMALL,
    "roberta": SMALL | {"bos_token_id": 2, "eos_token_id": 3},
    "xlm-roberta": SMALL | {"bos_token_id": 2, "eos_token_id": 3},
    "electra": SMALL | {"embedding_size": 32},
    "distilbert": {
        "dim": 32,
        "n_layers": 2,
        "n_heads": 2,
        "hidden_dim": 64,
        "vocab_size": len(VOCAB),
        "pad_token_id": 0,
        "max_position_embeddings": 160,
    },
    "deberta-v2": SMALL
    | {
        "relative_attention": True,
        "position_buckets": 16,
        "max_relative_positions": 64,
        "pos_att_type": ["p2c", "c2p"],
    },
    "albert": SMALL | {"embedding_size": 16},
    "mpnet": SMALL | {"bos_token_id": 2, "eos_token_id": 3},
    "modernbert": SMALL
    | {
        "global_attn_every_n_layers": 2,
        "local_attention": 16,
        "cls_token_id": 2,
        "sep_token_id": 3,
        "bos_token_id": 2,
        "eos_token_id": 3,
    },
    # the other BERT-style encoders that the layer and residual-stream speed-ups are put on
    "camembert": SMALL | {"bos_token_id": 2, "eos_token_id": 3},
    "data2vec-text": SMALL | {"bos_token_id": 2, "eos_token_id": 3},
    "ernie": SMALL,
}
FAST = ("bert",)
PARAMS = [pytest.param(name, marks=() if name in FAST else pytest.mark.slow) for name in ARCHITECTURES]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    dirs = {}
    for name, settings in ARCHITECTURES.items():
        directory = tmp_path_factory.mktemp(name)
        BertTokenizer(vocab={word: index for index, word in enumerate(VOCAB)}).save_pretrained(directory)
        torch.manual_seed(0)
        AutoModel.from_config(AutoConfig.for_model(name, **settings)).save_pretrained(directory)
        dirs[name] = directory
    return dirs


def heads_of(architecture: str) -> list[str]:
    """textclf's pooler head exists only for encoders with a pooler."""
    return ["native", "cls", "mean"] + (["pooler"] if architecture in ("bert", "albert", "ernie") else [])


@pytest.mark.parametrize("architecture", PARAMS)
def test_speedups_give_the_same_logits_for_every_head(model_dirs: dict[str, Path], architecture: str) -> None:
    ids = torch.randint(5, len(VOCAB), (4, 13))
    ids[:, 0] = 2
    mask = torch.ones_like(ids)
    mask[1, 9:], mask[3, 4:] = 0, 0
    for head in heads_of(architecture):

        def build(speedups: bool, head: str = head) -> torch.nn.Module:
            torch.manual_seed(0)  # the same head weights
            return build_network(
                3,
                pretrained=str(model_dirs[architecture]),
                head=head,
                skip_unused_tokens=speedups,
                bf16_residual=speedups,
                attention_dropout=None,
            ).eval()

        plain, fast = build(False), build(True)
        with torch.no_grad():
            torch.testing.assert_close(fast(ids, mask), plain(ids, mask), rtol=1e-4, atol=1e-5, msg=head)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                torch.testing.assert_close(
                    fast(ids, mask).float(),
                    plain(ids, mask).float(),
                    rtol=0.05,
                    atol=0.05,
                    msg=f"{head} under bf16 autocast",
                )


@pytest.mark.parametrize("architecture", PARAMS)
def test_every_head_trains_and_the_checkpoint_evaluates_predicts_and_exports(
    model_dirs: dict[str, Path], tmp_path: Path, architecture: str
) -> None:
    csv = tmp_path / "reviews.csv"
    toy_reviews(600).to_csv(csv, index=False)
    for head in heads_of(architecture)[1:]:  # the other heads: a few steps train
        metrics, _ = train(
            compose_cfg(
                tmp_path / head, model_dirs[architecture], *toy_training(csv), f"model.net.head={head}", "debug=fdr"
            )
        )
        assert np.isfinite(metrics["val/loss"]), (head, metrics)
    cfg = compose_cfg(
        tmp_path / "native",
        model_dirs[architecture],
        *toy_training(csv),
        "trainer.max_epochs=6",
        "callbacks.early_stopping=null",
        "trainer.precision=bf16-mixed",
    )
    metrics, objects = train(cfg)
    assert metrics["test/acc"] >= 0.9, metrics  # the native head learned the sentiment keyword
    best = objects["trainer"].checkpoint_callback.best_model_path

    evaluated = evaluate(
        compose_cfg(tmp_path / "eval", None, f"ckpt_path={best}", "data=files", f"data.train_file={csv}", config="eval")
    )
    assert evaluated["test/acc"] == pytest.approx(metrics["test/acc"], abs=0.02)
    texts = toy_reviews(50, seed=9)["text"].tolist()
    predictor = Predictor.from_checkpoint(best, precision="32-true")
    probabilities = predictor.predict_proba(texts)

    exported = export(
        compose_cfg(
            tmp_path / "x", None, f"ckpt_path={best}", "format=hf", f"output_dir={tmp_path / 'hf'}", config="export"
        )
    )
    classify = pipeline("text-classification", model=str(exported), top_k=None)
    for row, expected in zip(classify(texts), probabilities):
        scores = {item["label"]: item["score"] for item in row}
        assert [scores[name] for name in predictor.id2label.values()] == pytest.approx(expected.tolist(), abs=1e-4)
    onnx_dir = export(
        compose_cfg(
            tmp_path / "o", None, f"ckpt_path={best}", "format=onnx", f"output_dir={tmp_path / 'onnx'}", config="export"
        )
    )
    assert (onnx_dir / "model.onnx").is_file()  # checked against PyTorch on two shapes by the export itself
