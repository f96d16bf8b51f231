"""A plain Hugging Face Trainer script, as a user writes one: read CSV splits, fine-tune with an evaluation
each epoch (dynamic padding, bf16 unless `--no-bf16`), then predict the test split. `scripts/benchmark.py` runs it as a
whole process against the `textclf-train` command on the same rows.

    .venv/bin/python scripts/trainer_script.py --data DIR --model all-MiniLM-L6-v2 --out DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a folder with train.csv, val.csv, test.csv (text, label)")
    parser.add_argument("--model", required=True, help="a local model folder")
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True, help="bf16 mixed precision")
    args = parser.parse_args()

    splits = {name: pd.read_csv(Path(args.data) / f"{name}.csv") for name in ("train", "val", "test")}
    labels = sorted(splits["train"]["label"].unique())
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=len(labels), id2label=dict(enumerate(labels))
    )

    def dataset(frame: pd.DataFrame) -> list[dict]:
        encoded = tokenizer(frame["text"].tolist(), truncation=True, max_length=args.max_length)
        targets = frame["label"].map({label: index for index, label in enumerate(labels)}).tolist()
        return [
            {"input_ids": ids, "attention_mask": mask, "labels": target}
            for ids, mask, target in zip(encoded["input_ids"], encoded["attention_mask"], targets)
        ]

    def accuracy(prediction) -> dict[str, float]:
        return {"acc": float((prediction.predictions.argmax(1) == prediction.label_ids).mean())}

    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=args.out,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=256,
            num_train_epochs=args.epochs,
            learning_rate=args.lr,
            warmup_steps=0.1,
            seed=args.seed,
            bf16=args.bf16,
            eval_strategy="epoch",
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            use_cpu=args.device == "cpu",
        ),
        train_dataset=dataset(splits["train"]),
        eval_dataset=dataset(splits["val"]),
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy,
    )
    trainer.train()
    test = trainer.predict(dataset(splits["test"]))
    print("RESULT " + json.dumps({"test_acc": float(np.mean(test.predictions.argmax(1) == test.label_ids))}))


if __name__ == "__main__":
    main()
