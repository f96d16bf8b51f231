"""The `README.md` model card of a Hugging Face export: YAML metadata the hub reads (`pipeline_tag`,
`base_model`, `model-index` with the test metrics), then the labels, data, training settings, how to load
it and its limitations, all from what the checkpoint carries. The test metrics are those of the run that
wrote the checkpoint (`metrics.json` in its run dir), when it is still beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from textclf.model.trained import TrainedClassifier

# textclf's test metrics as the hub's metric types
HUB_METRICS = {
    "test/acc": ("accuracy", "Test accuracy"),
    "test/f1": ("f1", "Test F1 (macro)"),
    "test/f1_micro": ("f1", "Test F1 (micro)"),
    "test/precision": ("precision", "Test precision (macro)"),
    "test/recall": ("recall", "Test recall (macro)"),
    "test/pearson": ("pearsonr", "Test Pearson r"),
    "test/spearman": ("spearmanr", "Test Spearman rho"),
    "test/mse": ("mse", "Test mean squared error"),
    "test/mae": ("mae", "Test mean absolute error"),
}


def run_test_metrics(checkpoint: str | Path) -> dict[str, float]:
    """The test metrics in `metrics.json` of the run dir holding `checkpoint` (run/checkpoints/x.ckpt)."""
    path = Path(checkpoint).resolve().parent.parent / "metrics.json"
    if not path.is_file():
        return {}
    metrics = json.loads(path.read_text())
    return {key: float(value) for key, value in metrics.items() if key in HUB_METRICS}


def base_model(model: TrainedClassifier) -> str | None:
    """The hub name of the encoder it was fine-tuned from; None for a local folder."""
    pretrained = str(model.net.spec.get("pretrained", ""))
    if pretrained == "all-MiniLM-L6-v2":
        return "sentence-transformers/all-MiniLM-L6-v2"
    return pretrained if pretrained and not Path(pretrained).expanduser().exists() else None


def dataset_name(data: dict[str, Any]) -> str:
    """The data it was trained on, as a user would name it."""
    source = data.get("source", "unknown")
    if source == "hf":
        return str(data.get("path") or Path(str(data.get("from_disk"))).name)
    if source == "files":
        return Path(str(data.get("train_file"))).name
    return str(source)


def metadata(model: TrainedClassifier, metrics: dict[str, float], name: str) -> dict[str, Any]:
    data = model.data_hparams
    card: dict[str, Any] = {"library_name": "transformers", "pipeline_tag": "text-classification"}
    if base := base_model(model):
        card["base_model"] = base
    card["tags"] = ["textclf", "text-classification"] + (["multi-label"] if model.task.multi_label else [])
    card["tags"] += ["regression"] if model.task.regression else []
    if data.get("source") == "hf" and data.get("path") and not Path(str(data["path"])).exists():
        card["datasets"] = [str(data["path"])]
    if metrics:
        card["metrics"] = sorted({HUB_METRICS[key][0] for key in metrics})
        dataset = {"name": dataset_name(data), "type": dataset_name(data), "split": "test"}
        card["model-index"] = [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": "text-classification", "name": "Text Classification"},
                        "dataset": dataset,
                        "metrics": [
                            {"type": HUB_METRICS[key][0], "value": round(value, 4), "name": HUB_METRICS[key][1]}
                            for key, value in metrics.items()
                        ],
                    }
                ],
            }
        ]
    return card


def reading(data: dict[str, Any]) -> str:
    """How the model read its inputs: pairs, and how long texts were cut or windowed."""
    limit = data.get("max_length")
    lines = []
    if data.get("text_pair_column") is not None:
        cut = "the second text only" if data.get("pair_truncation") == "only_second" else "the longer text first"
        lines.append(
            f"- pairs of texts, read together (`text`, `text_pair`); a pair longer than {limit} tokens "
            f"is cut from {cut}"
        )
    if data.get("long_texts") == "window":
        lines.append(
            f"- texts longer than {limit} tokens are read as overlapping windows of {limit} tokens "
            f"({data.get('window_stride')} tokens of overlap); a text's prediction is the "
            f"{data.get('window_aggregation', 'mean')} of its windows' logits"
        )
    else:
        truncation = str(data.get("truncation", "head")).replace("_", " and ")
        lines.append(f"- texts longer than {limit} tokens are truncated, keeping the {truncation}")
    return "\n".join(lines)


def usage(model: TrainedClassifier) -> str:
    """The `pipeline` call that predicts as textclf does, and what it cannot do."""
    data, hp = model.data_hparams, model.hparams
    pairs = data.get("text_pair_column") is not None
    options = (
        ', truncation="only_second"' if pairs and data.get("pair_truncation") == "only_second" else ", truncation=True"
    )
    options += ", top_k=None" if model.task.multi_label else ""
    options += ', function_to_apply="none"' if model.task.regression else ""
    example = '{"text": "the first text", "text_pair": "the second text"}' if pairs else '"a text to classify"'
    notes = [
        f"The tokenizer carries `model_max_length` {data.get('max_length')}: "
        "long inputs are cut where training cut them."
    ]
    if model.task.regression:
        notes.append(f"`score` is the predicted {model.id2label[0]}, on the scale of the training scores.")
    if model.task.multi_label and (hp.get("thresholds") is not None or hp["threshold"] != 0.5):
        notes.append(
            "`pipeline` itself predicts a label when its probability reaches 0.5; to decide as textclf does, "
            "compare each label's score with its threshold in `config.textclf_thresholds`."
        )
    if data.get("long_texts") == "window":
        notes.append(
            f"`pipeline` reads a long text's first {data.get('max_length')} tokens only; `textclf-predict` on the "
            "checkpoint reads all its windows and combines them as in training."
        )
    return f"""```python
from transformers import pipeline

model = pipeline("text-classification", model="PATH_OR_HUB_NAME"{options})
model({example})
```

{" ".join(notes)}"""


def model_card(model: TrainedClassifier, checkpoint: str | Path, name: str) -> str:
    """The card's text: YAML front matter, then Markdown."""
    metrics = run_test_metrics(checkpoint)
    front_matter = yaml.safe_dump(metadata(model, metrics, name), sort_keys=False, allow_unicode=True).strip()
    sections = [
        labels_section(model),
        data_section(model.data_hparams),
        settings_section(model),
        results_section(metrics),
        f"## How to use\n\n{usage(model)}",
        limitations_section(model),
    ]
    return f"---\n{front_matter}\n---\n\n# {name}\n\n{summary(model)}\n\n" + "\n\n".join(sections) + "\n"


def summary(model: TrainedClassifier) -> str:
    """The opening paragraph: what kind of model it is, what it was fine-tuned from, what it predicts, and
    whether its probabilities are calibrated."""
    base = base_model(model) or str(model.net.spec.get("pretrained"))
    inputs = "text pairs" if model.data_hparams.get("text_pair_column") is not None else "texts"
    kind = (
        f"A regression model of {inputs}"
        if model.task.regression
        else f"A {'multi' if model.task.multi_label else 'single'}-label classifier of {inputs} "
        f"with {len(model.id2label)} labels"
    )
    temperature = model.task.temperature
    calibrated = (
        f"\n\nIts probabilities are calibrated: the logits are divided by a temperature of {temperature:.4f}, "
        "fitted on the validation split (temperature scaling) and folded into the last layer's weights."
        if temperature != 1.0
        else ""
    )
    return (
        f"{kind}, fine-tuned from `{base}` with textclf (PyTorch Lightning + Hydra). "
        f"It predicts {decision(model)}.{calibrated}"
    )


def decision(model: TrainedClassifier) -> str:
    """What a prediction is: the labels whose probability reaches a threshold, a number, or one label."""
    if model.task.multi_label:
        if model.hparams.get("thresholds") is not None:
            return (
                "every label whose sigmoid probability reaches its own threshold (tuned for F1 on the validation "
                "split; table below, and `config.textclf_thresholds`)"
            )
        return f"every label whose sigmoid probability reaches {model.hparams['threshold']}"
    if model.task.regression:
        return f"one number, its {model.id2label[0]}"
    return "the most probable label"


def labels_section(model: TrainedClassifier) -> str:
    """The labels by id, with each label's threshold where a multi-label classifier has them."""
    thresholds = [round(float(t), 4) for t in model.task.thresholds] if model.task.multi_label else []
    if thresholds:
        header = "| id | label | threshold |\n|---|---|---|"
        pairs = zip(model.id2label.items(), thresholds)
        rows = [f"| {index} | {label} | {threshold} |" for (index, label), threshold in pairs]
    else:
        header = "| id | label |\n|---|---|"
        rows = [f"| {index} | {label} |" for index, label in model.id2label.items()]
    return f"## Labels\n\n{header}\n" + "\n".join(rows)


def data_section(data: dict[str, Any]) -> str:
    """The data it was trained on, how it read the texts, and where its validation and test rows came from."""
    return f"""## Data

- dataset: {dataset_name(data)} (textclf source `{data.get("source", "unknown")}`)
{reading(data)}
- validation and test rows: the dataset's own splits where it has them, else split off the training rows
  (val {data.get("val_fraction")}, test {data.get("test_fraction")}, split seed {data.get("split_seed")})"""


def settings_section(model: TrainedClassifier) -> str:
    """The training settings a reader needs to reproduce the run or compare it with another."""
    hp, spec = model.hparams, model.net.spec
    return f"""## Training settings

| setting | value |
|---|---|
| head | {spec.get("head")} |
| learning rate | {hp["lr"]} |
| weight decay | {hp["weight_decay"]} |
| warm-up fraction | {hp["warmup_fraction"]} |
| batch size | {model.data_hparams.get("batch_size")} |
| class weights | {"yes" if hp["class_weights"] else "no"} |
| LoRA | {"merged into the weights" if spec.get("peft") else "no"} |"""


def results_section(metrics: dict[str, float]) -> str:
    """The test metrics of the run that wrote the checkpoint, or a note that none were found."""
    if not metrics:
        return "## Results\n\nNo test metrics were found beside the checkpoint."
    rows = "\n".join(f"| {HUB_METRICS[key][1]} | {value:.4f} |" for key, value in metrics.items())
    return f"## Results\n\n| metric | value |\n|---|---|\n{rows}"


def limitations_section(model: TrainedClassifier) -> str:
    """Where the model is expected to do worse than its results say, for the kind of model it is."""
    data = model.data_hparams
    if model.task.regression:
        limit = "It predicts numbers in the range the training scores taught it; far outside it, expect errors to grow."
    elif model.task.multi_label:
        limit = (
            "A label is predicted when its probability reaches the threshold: "
            "the threshold trades precision for recall."
        )
    else:
        limit = f"It always answers with one of its {len(model.id2label)} labels; it cannot say that a text fits none."
    if data.get("long_texts") == "window":
        reading_limit = "Long texts are read in windows; a text's label can rest on one passage."
    else:
        reading_limit = f"Tokens past {data.get('max_length')} are not read."
    return f"""## Limitations

- Trained and tested on {dataset_name(data)} only: texts of another domain, style or language may be
  classified worse than the results above say.
- {limit}
- {reading_limit}"""


def write(model: TrainedClassifier, checkpoint: str | Path, directory: Path, name: str) -> None:
    """`README.md` in `directory`, the export of `checkpoint` called `name`."""
    (directory / "README.md").write_text(model_card(model, checkpoint, name), encoding="utf-8")
