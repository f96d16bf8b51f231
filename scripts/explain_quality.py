"""Token attributions: how faithful, how complete, how fast (docs/explain.md).

    # faithfulness and completeness (no timing): checkpoints of short textclf-train runs, 500 test texts each
    OMP_NUM_THREADS=1 .venv/bin/python scripts/explain_quality.py quality \\
        --checkpoint rotten_tomatoes=RUN1/checkpoints/best.ckpt --checkpoint trec6=RUN2/checkpoints/best.ckpt
    # speed, alone on the machine: textclf's batched explainer against captum text by text, and a long document
    .venv/bin/python scripts/explain_quality.py speed --checkpoint rotten_tomatoes=RUN1/checkpoints/best.ckpt

`quality`, per dataset (its test split, as training split it) and method: the deletion test (each text's k
most positively attributed tokens deleted by their character offsets, k = 1, 3, 5, against k tokens drawn at
random, seeded; the mean drop of the predicted class's probability, and the ratio top-k / random), and for
integrated gradients the distribution of |completeness delta| / |f(text) - f(baseline)| at each `--n-steps`,
with the [PAD] and the [MASK] baseline. `speed`: texts/s of `explain_texts` (batched, length-sorted) against
captum's LayerIntegratedGradients called text by text with the same n_steps, baseline and target (the way
transformers-interpret runs it), one after the other on the same texts; then one document of about 5,000
tokens read with windows (`--window-length`, 128 by default, stride 32), its time and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textclf.config import compose_config
from textclf.data import splits
from textclf.inference.explanation import N_STEPS, PRECISION, explain_texts
from textclf.inference.predictor import Predictor
from textclf.model.loading import load_trained

KS = (1, 3, 5)
METHODS = ("integrated_gradients", "gradient_x_input", "occlusion")


def test_texts(dataset: str, count: int, seed: int = 0) -> list[str]:
    """`count` texts of the dataset's test split (the split textclf-train tests on), drawn with `seed`."""
    with tempfile.TemporaryDirectory() as directory:
        cfg = compose_config("train", [f"data={dataset}"], Path(directory))
    _, frames = splits.read(cfg.data, multi_label=False, train_required=False)
    texts = frames["test"]["text"].tolist()
    return random.Random(seed).sample(texts, min(count, len(texts)))


def deleted(text: str, offsets: list[list[int]], chosen: list[int]) -> str:
    """`text` without the characters of the chosen tokens."""
    keep = np.ones(len(text), dtype=bool)
    for index in chosen:
        start, end = offsets[index]
        keep[start:end] = False
    return "".join(character for character, kept in zip(text, keep) if kept)


def deletion_test(predictor: Predictor, records: list[dict[str, Any]], seed: int = 0) -> dict[str, float]:
    """Mean drop of the predicted class's probability when each text's top-k tokens, or k random ones, go."""
    rng = random.Random(seed)
    names = list(predictor.id2label.values())
    original = np.array([record["probabilities"][record["target"]] for record in records])
    target = np.array([names.index(record["target"]) for record in records])
    result = {}
    for k in KS:
        top, drawn = [], []
        for record in records:
            order = np.argsort(-np.array(record["attributions"]), kind="stable")[:k].tolist()
            top.append(deleted(record["text"], record["offsets"], order))
            others = rng.sample(range(len(record["tokens"])), min(k, len(record["tokens"])))
            drawn.append(deleted(record["text"], record["offsets"], others))
        for name, texts in (("top", top), ("random", drawn)):
            probabilities = predictor.predict_proba(texts)[np.arange(len(texts)), target]
            result[f"{name}{k}"] = float(np.mean(original - probabilities))
        result[f"ratio{k}"] = result[f"top{k}"] / max(result[f"random{k}"], 1e-9)
    return result


def completeness(records: list[dict[str, Any]]) -> dict[str, float]:
    """|delta| / |f(text) - f(baseline)| over the texts: its median, 90th percentile, share within 1 %."""
    relative = []
    for record in records:
        change = sum(record["attributions"]) - record["completeness_delta"]
        if abs(change) > 1e-6:
            relative.append(abs(record["completeness_delta"]) / abs(change))
    relative = np.array(relative)
    return {
        "median": float(np.median(relative)),
        "p90": float(np.percentile(relative, 90)),
        "within_1pct": float(np.mean(relative <= 0.01)),
        "texts": len(relative),
    }


class Explanations:
    """One dataset's explanations, each (method, baseline, n_steps) computed once, with its seconds."""

    def __init__(self, model: Any, texts: list[str], precision: str) -> None:
        self.model, self.texts, self.precision = model, texts, precision
        self.found: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
        self.seconds: dict[tuple[str, str, int], float] = {}

    def __call__(self, method: str, baseline: str = "pad", steps: int = N_STEPS) -> list[dict[str, Any]]:
        key = (method, baseline, steps)
        if key not in self.found:
            start = time.perf_counter()
            self.found[key] = explain_texts(
                self.model, self.texts, method=method, baseline=baseline, n_steps=steps, precision=self.precision
            )
            self.seconds[key] = time.perf_counter() - start
        return self.found[key]


def quality(args: argparse.Namespace) -> None:
    print("| dataset | method | baseline | drop top-1 / 3 / 5 | drop random-1 / 3 / 5 | ratio k=1 / 3 / 5 | s |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for dataset, path in args.checkpoint:
        model = load_trained(path)
        predictor = Predictor(model, precision="32-true")
        explained = Explanations(model, test_texts(dataset, args.texts), args.precision)
        for method in args.methods:
            for baseline in args.baselines:  # gradient × input multiplies by input - baseline: each baseline
                drop = deletion_test(predictor, explained(method, baseline))
                cells = [" / ".join(f"{drop[f'{kind}{k}']:.3f}" for k in KS) for kind in ("top", "random")]
                ratio = " / ".join(f"{drop[f'ratio{k}']:.1f}x" for k in KS)
                seconds = explained.seconds[(method, baseline, N_STEPS)]
                print(
                    f"| {dataset} | {method} | {baseline} | {cells[0]} | {cells[1]} | {ratio} | {seconds:.0f} |",
                    flush=True,
                )
        for steps in args.n_steps:
            for baseline in args.baselines:
                rows.append(
                    (dataset, steps, baseline, completeness(explained("integrated_gradients", baseline, steps)))
                )
    print("\n| dataset | n_steps | baseline | median | 90th percentile | texts within 1 % |")
    print("|---|---|---|---|---|---|")
    for dataset, steps, baseline, stats in rows:
        print(
            f"| {dataset} | {steps} | {baseline} | {stats['median']:.2%} | {stats['p90']:.2%} | "
            f"{stats['within_1pct']:.0%} of {stats['texts']} |"
        )


def captum_text_by_text(model: Any, texts: list[str], n_steps: int, device: torch.device) -> None:
    """Integrated gradients as transformers-interpret computes them: one text at a time, its own forward and
    backward over all n_steps, [PAD] baseline keeping [CLS]/[SEP], the predicted class's softmax probability."""
    from captum.attr import LayerIntegratedGradients

    tokenizer = model.tokenizer

    def probability(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return model.task.probabilities(model(input_ids, attention_mask))

    explainer = LayerIntegratedGradients(probability, model.net.encoder.get_input_embeddings())
    max_length = model.data_hparams.get("max_length") or 512
    for text in texts:
        ids = torch.tensor([tokenizer(text, truncation=True, max_length=max_length)["input_ids"]], device=device)
        baseline = torch.full_like(ids, tokenizer.pad_token_id)
        baseline[0, 0], baseline[0, -1] = ids[0, 0], ids[0, -1]
        mask = torch.ones_like(ids)
        with torch.no_grad():
            target = int(probability(ids, mask).argmax())
        explainer.attribute(ids, baseline, target=target, additional_forward_args=(mask,), n_steps=n_steps)


def speed(args: argparse.Namespace) -> None:
    dataset, path = args.checkpoint[0]
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    model = load_trained(path).to(device)
    texts = test_texts(dataset, args.speed_texts)
    explain_texts(model, texts[:8], device=str(device))  # warm-up: kernels, allocator
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    explain_texts(model, texts, n_steps=args.speed_steps, device=str(device), precision=args.precision)
    sync()
    batched = len(texts) / (time.perf_counter() - start)
    start = time.perf_counter()
    captum_text_by_text(model, texts, args.speed_steps, device)
    sync()
    one_by_one = len(texts) / (time.perf_counter() - start)
    print(f"| textclf explain_texts ({args.precision}) | {batched:.1f} texts/s |")
    print(f"| captum LayerIntegratedGradients, text by text (fp32) | {one_by_one:.1f} texts/s |")
    ratio, steps = batched / one_by_one, args.speed_steps
    print(f"| ratio | {ratio:.1f}x | ({len(texts)} {dataset} texts, n_steps={steps}, {device})")
    long_document(model, device, args.precision, args.speed_steps, args.window_length)


def long_document(model: Any, device: torch.device, precision: str, n_steps: int, window_length: int) -> None:
    """One document of about 5,000 tokens (imdb reviews joined), explained through windows."""
    reviews = test_texts("imdb", 200)
    document, tokens = "", 0
    for review in reviews:
        document += review + " "
        tokens += len(model.tokenizer.tokenize(review))
        if tokens >= 5_000:
            break
    model.data_hparams = model.data_hparams | {"long_texts": "window", "window_stride": 32, "max_length": window_length}
    start = time.perf_counter()
    (record,) = explain_texts(model, [document], n_steps=n_steps, device=str(device), precision=precision)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    change = sum(record["attributions"]) - record["completeness_delta"]
    print(
        f"| a {len(record['tokens'])}-token document, windows of {model.data_hparams.get('max_length')} | "
        f"{seconds:.1f} s | peak RSS {peak:.0f} MiB | completeness delta {record['completeness_delta']:.2g} "
        f"of f(x) - f(b) = {change:.3f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("quality", "speed"))
    parser.add_argument("--checkpoint", action="append", required=True, type=lambda s: tuple(s.split("=", 1)))
    parser.add_argument("--texts", type=int, default=500, help="texts per dataset for the quality part")
    parser.add_argument("--speed-texts", type=int, default=200)
    parser.add_argument("--speed-steps", type=int, default=N_STEPS, help="n_steps of the speed part (both sides)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--n-steps", nargs="+", type=int, default=[16, N_STEPS, 64], help="for completeness")
    parser.add_argument("--baselines", nargs="+", default=["pad", "mask"], choices=("pad", "mask"))
    parser.add_argument("--precision", default=PRECISION, help="the explainer's (its default: fp32)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--window-length", type=int, default=128, help="the long document's windows, in tokens")
    args = parser.parse_args()
    torch.manual_seed(0)
    quality(args) if args.part == "quality" else speed(args)


if __name__ == "__main__":
    main()
