"""Few-shot text classification, measured: textclf's contrastive strategy (SetFit's recipe) against textclf's
plain fine-tuning and against the `setfit` package itself, on the same training files and the same test rows.

    .venv/bin/python scripts/fewshot.py      # trec6, sms_spam, rotten_tomatoes; 8, 16, 64 per class; 5 seeds
    .venv/bin/python scripts/fewshot.py --datasets trec6 --per-class 8 --seeds 0 1 --methods contrastive setfit
    .venv/bin/python scripts/fewshot.py --setfit-seeds 2     # setfit: only seeds 0 and 1 from 64 per class up
    .venv/bin/python scripts/fewshot.py --report-only        # the table and the figure of an existing CSV

For each packaged dataset, the test rows are those of textclf's own test split (`textclf-train data=NAME`
tests on them), at most `--test-size` of them (drawn once, seed 0). For each N in `--per-class` and each
seed in `--seeds`, N training rows per class are drawn from the training split with that seed (textclf's
`data.train_per_class` sampler; a class with fewer rows: all of them), written to train.csv, and the same
train.csv and test.csv go to every method:

  contrastive  `python -m textclf train strategy=contrastive`: SetFit's recipe (pairs, then a logistic regression)
  finetune     `python -m textclf train strategy=finetune trainer.max_epochs=--finetune-epochs`
  setfit       the `setfit` package (1.x) with its defaults, `num_iterations=20`, on the same packaged MiniLM

all with `data.max_length`/`max_seq_length` `--max-length`, the run's seed, no validation split; setfit in fp32
(its default), textclf in its default precision (`trainer.precision=auto`: bf16 where the CPU is fast at it).
Each run is its own process, so its wall time (start to exit: imports, loading, training, testing) and peak RSS
(`os.wait4`'s ru_maxrss) are its own. One CSV row per run (accuracy, macro-F1, seconds, peak RSS MB, the CPU),
appended as it finishes: a killed benchmark keeps what it measured, and a rerun skips the runs already in the
CSV. At the end: a Markdown table of mean ± std per (dataset, N, method) and a PNG of accuracy against N per
dataset, one line per method, std as error bars. A benchmark, not a test: seconds vary with the machine's load.
The setfit runs need `pip install setfit` (1.2.0 was measured: it adds sentence-transformers and evaluate).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATASETS = ("trec6", "sms_spam", "rotten_tomatoes")
METHODS = ("contrastive", "finetune", "setfit")
MODEL = "all-MiniLM-L6-v2"
FIELDS = (
    "dataset",
    "per_class",
    "seed",
    "method",
    "settings",
    "max_length",
    "test_size",
    "train_rows",
    "test_rows",
    "accuracy",
    "macro_f1",
    "seconds",
    "peak_rss_mb",
    "cpu",
    "finished",
)
# what makes two runs the same run: a rerun skips the runs whose key is already in the CSV
KEY = ("dataset", "per_class", "seed", "method", "settings", "max_length", "test_size")
INTEGERS = ("per_class", "seed", "max_length", "test_size")

log = logging.getLogger("fewshot")


def test_split(name: str, test_size: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training split (label tuples, as textclf's sampler takes them) and at most `test_size` rows of the
    test split (text, label) that `textclf-train data=NAME` uses, drawn once with seed 0."""
    from textclf.config import compose_config
    from textclf.data import splits

    with tempfile.TemporaryDirectory() as directory:
        cfg = compose_config("train", [f"data={name}"], Path(directory))
    _, frames = splits.read(cfg.data, multi_label=False, train_required=False)
    test = frames["test"]
    if len(test) > test_size:
        test = test.iloc[np.sort(np.random.default_rng(0).choice(len(test), test_size, replace=False))]
    return frames["train"], plain(test)


def plain(frame: pd.DataFrame) -> pd.DataFrame:
    """text and label columns, the label a plain string (textclf's frames hold a tuple of names)."""
    return pd.DataFrame({"text": frame["text"].to_numpy(), "label": [names[0] for names in frame["label"]]})


def training_rows(train: pd.DataFrame, per_class: int, seed: int) -> pd.DataFrame:
    """`per_class` rows of each class (all of a smaller class), drawn from `seed` by textclf's few-shot sampler."""
    from textclf.data.splits import per_class as sample

    return plain(sample(train, per_class, seed))


def run_child(command: list[str], cwd: Path, output: Path) -> tuple[int, float, float]:
    """Run `command` in `cwd`, its output to the file `output`: exit code, wall seconds, peak RSS in MB
    (the child's own, from `os.wait4`; RUSAGE_CHILDREN would be the largest of all children so far)."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    with output.open("w") as stream:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=stream, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    return process.returncode, seconds, usage.ru_maxrss / 1024  # Linux: KB


def textclf_command(method: str, folder: Path, seed: int, args: argparse.Namespace) -> tuple[list[str], Path]:
    """The `python -m textclf train` command of one run, and the metrics.json it writes."""
    run_dir = folder / method
    command = [
        sys.executable,
        "-m",
        "textclf",
        "train",
        "data=files",
        f"data.train_file={folder / 'train.csv'}",
        f"data.test_file={folder / 'test.csv'}",
        "data.val_fraction=0",
        f"data.max_length={args.max_length}",
        f"strategy={method}",
        f"seed={seed}",
        f"hydra.run.dir={run_dir}",
        f"paths.cache_dir={folder / 'cache'}",
        "callbacks.progress_bar=null",
        "logger=none",
        *([f"trainer.max_epochs={args.finetune_epochs}"] if method == "finetune" else []),
        *args.textclf_args,
    ]
    return command, run_dir / "metrics.json"


def setfit_command(folder: Path, seed: int, args: argparse.Namespace) -> tuple[list[str], Path]:
    """This script in its `--setfit-run` mode: one setfit run on the folder's files, metrics to a JSON."""
    metrics = folder / "setfit" / "metrics.json"
    command = [
        sys.executable,
        __file__,
        "--setfit-run",
        str(folder),
        f"--seeds={seed}",
        f"--max-length={args.max_length}",
        f"--setfit-iterations={args.setfit_iterations}",
    ]
    return command, metrics


def setfit_run(args: argparse.Namespace) -> None:
    """The `--setfit-run FOLDER` mode: train setfit on FOLDER/train.csv (its defaults: a contrastive phase of
    `num_iterations` pairs per example, batch 16, one epoch, then a logistic-regression head), predict
    FOLDER/test.csv, write accuracy and macro-F1 to FOLDER/setfit/metrics.json."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from sklearn.metrics import accuracy_score, f1_score

    from textclf.pretrained import resolve_pretrained

    folder, seed = Path(args.setfit_run), args.seeds[0]
    train, test = (pd.read_csv(folder / name, dtype=str, keep_default_na=False) for name in ("train.csv", "test.csv"))
    classes = sorted(train["label"].unique())
    index = {name: number for number, name in enumerate(classes)}
    model = SetFitModel.from_pretrained(resolve_pretrained(MODEL))
    model.model_body.max_seq_length = args.max_length  # setfit's max_length reaches the head only (issue #561)
    training = TrainingArguments(
        output_dir=str(folder / "setfit"),
        num_iterations=args.setfit_iterations,
        batch_size=16,
        num_epochs=1,
        max_length=args.max_length,
        seed=seed,
        save_strategy="no",
        report_to="none",
        show_progress_bar=False,
    )
    dataset = Dataset.from_pandas(pd.DataFrame({"text": train["text"], "label": train["label"].map(index)}))
    Trainer(model=model, args=training, train_dataset=dataset).train()
    predicted = np.asarray(model.predict(test["text"].tolist(), use_labels=False))
    truth = test["label"].map(lambda name: index.get(name, -1)).to_numpy()  # a class unseen in training: wrong
    metrics = {
        "test/acc": float(accuracy_score(truth, predicted)),
        "test/f1": float(f1_score(truth, predicted, average="macro")),
    }
    (folder / "setfit" / "metrics.json").write_text(json.dumps(metrics) + "\n")


def settings(method: str, args: argparse.Namespace) -> str:
    """What, beyond the data, the seed and max_length, decides a method's run (part of the CSV's key)."""
    extra = " ".join(args.textclf_args)
    if method == "finetune":
        return " ".join(filter(None, [f"epochs={args.finetune_epochs}", extra]))
    if method == "setfit":
        return f"iterations={args.setfit_iterations}"
    return extra


def methods_for(per_class: int, seed_number: int, args: argparse.Namespace) -> list[str]:
    """The methods to run at this N for the `seed_number`-th seed: setfit only for its first
    `--setfit-seeds` seeds from `--setfit-large` per class up."""
    few_enough = args.setfit_seeds is None or per_class < args.setfit_large or seed_number < args.setfit_seeds
    return [method for method in args.methods if method != "setfit" or few_enough]


def read_rows(path: Path) -> pd.DataFrame:
    """The CSV's runs so far (none: an empty frame with its columns)."""
    if not path.is_file():
        return pd.DataFrame(columns=FIELDS)
    return pd.read_csv(path, dtype={"settings": str}, keep_default_na=False, na_values=[""])


def key(row: dict) -> tuple:
    """A run's KEY values, typed alike whether they come from the CSV or from the command line."""
    return tuple(int(row[name]) if name in INTEGERS else str(row[name] or "") for name in KEY)


def done_keys(path: Path) -> set[tuple]:
    frame = read_rows(path).fillna({"settings": ""})
    return {key(row) for row in frame.to_dict("records")}


def append_row(path: Path, row: dict) -> None:
    """Add one run to the CSV now (the header when the file is new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file()
    with path.open("a", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def cpu_name() -> str:
    """The CPU's model name and core count, as `machine.py` reads them."""
    sys.path.insert(0, str(Path(__file__).parent))
    from machine import cpuinfo_field

    return f"{cpuinfo_field('model name') or 'unknown CPU'} ({os.cpu_count()} cores)"


def run_one(method: str, folder: Path, seed: int, args: argparse.Namespace) -> dict | None:
    """One method on the folder's files: its figures, or None (logged with its output's tail) when it failed."""
    if method == "setfit":
        command, metrics_file = setfit_command(folder, seed, args)
    else:
        command, metrics_file = textclf_command(method, folder, seed, args)
    metrics_file.parent.mkdir(parents=True, exist_ok=True)
    metrics_file.unlink(missing_ok=True)  # a kept folder's earlier run must not stand in for this one
    output = folder / f"{method}.log"
    code, seconds, rss = run_child(command, folder, output)
    if code or not metrics_file.is_file():
        tail = "\n".join(output.read_text(errors="replace").splitlines()[-40:])
        log.error(f"{method} failed (exit {code}): {' '.join(command)}\n{tail}")
        return None
    metrics = json.loads(metrics_file.read_text())
    return {"accuracy": metrics["test/acc"], "macro_f1": metrics["test/f1"], "seconds": seconds, "peak_rss_mb": rss}


def benchmark(args: argparse.Namespace) -> int:
    """Every (dataset, N, seed, method) not yet in the CSV, each appended as it finishes; the failures' count."""
    done, cpu, failures = done_keys(args.out), cpu_name(), 0
    log.info(f"{cpu}; results to {args.out} ({len(done)} runs there already)")
    for name in args.datasets:
        train, test = test_split(name, args.test_size)
        for per_class in args.per_class:
            for number, seed in enumerate(args.seeds):
                base = {"dataset": name, "per_class": per_class, "seed": seed}
                base |= {"max_length": args.max_length, "test_size": args.test_size}
                todo = [
                    method
                    for method in methods_for(per_class, number, args)
                    if key(base | {"method": method, "settings": settings(method, args)}) not in done
                ]
                if not todo:
                    continue
                rows = training_rows(train, per_class, seed)
                with tempfile.TemporaryDirectory(prefix=f"fewshot-{name}-{per_class}-{seed}-") as scratch:
                    folder = args.keep / f"{name}-{per_class}-{seed}" if args.keep else Path(scratch)
                    folder.mkdir(parents=True, exist_ok=True)
                    rows.to_csv(folder / "train.csv", index=False)
                    test.to_csv(folder / "test.csv", index=False)
                    for method in todo:
                        figures = run_one(method, folder, seed, args)
                        if figures is None:
                            failures += 1
                            continue
                        row = base | {"method": method, "settings": settings(method, args)} | figures
                        row |= {"train_rows": len(rows), "test_rows": len(test), "cpu": cpu}
                        row["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
                        append_row(args.out, row)
                        log.info(
                            f"{name} N={per_class} seed={seed} {method}: acc {figures['accuracy']:.3f}, "
                            f"macro-F1 {figures['macro_f1']:.3f}, {figures['seconds']:.0f} s, "
                            f"{figures['peak_rss_mb']:.0f} MB"
                        )
    return failures


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """A `label` per row: the method, with its settings, and with max_length and the test size where the CSV
    holds several of them (so the table never averages different runs together)."""
    frame = frame.fillna({"settings": ""})
    varying = [name for name in ("max_length", "test_size") if frame[name].nunique() > 1]
    parts = frame["settings"].astype(str)
    for name in varying:
        parts = parts.str.cat(f"{name}=" + frame[name].astype(str), sep=" ").str.strip()
    return frame.assign(label=np.where(parts != "", frame["method"] + " (" + parts + ")", frame["method"]))


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and std of each figure per (dataset, N, method), and the number of seeds behind them."""
    grouped = labelled(frame).groupby(["dataset", "per_class", "label"], sort=False)
    table = grouped[["accuracy", "macro_f1", "seconds", "peak_rss_mb"]].agg(["mean", "std"])
    table.columns = [f"{figure}_{statistic}" for figure, statistic in table.columns]
    table["runs"] = grouped.size()
    table = table.reset_index()
    order = {name: place for place, name in enumerate(dict.fromkeys(frame["dataset"]))}  # the CSV's order
    return table.sort_values(["dataset", "per_class"], key=lambda c: c.map(order) if c.name == "dataset" else c)


def markdown(frame: pd.DataFrame) -> str:
    """The summary as a Markdown table, under a line naming the CPU(s) and above a note on unequal seeds."""
    table = summary(frame)
    most_runs = table.groupby(["dataset", "per_class"])["runs"].transform("max")

    def spread(mean: float, std: float, digits: int) -> str:
        return f"{mean:.{digits}f}" if np.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"  # one run: no std

    shown = pd.DataFrame(
        {
            "dataset": table["dataset"],
            "N/class": table["per_class"],
            "method": table["label"],
            "runs": [f"{runs}*" if runs < most else str(runs) for runs, most in zip(table["runs"], most_runs)],
            "accuracy": [spread(m, s, 3) for m, s in zip(table["accuracy_mean"], table["accuracy_std"])],
            "macro-F1": [spread(m, s, 3) for m, s in zip(table["macro_f1_mean"], table["macro_f1_std"])],
            "seconds": [spread(m, s, 0) for m, s in zip(table["seconds_mean"], table["seconds_std"])],
            "peak RSS (MB)": [spread(m, s, 0) for m, s in zip(table["peak_rss_mb_mean"], table["peak_rss_mb_std"])],
        }
    )
    cpus = "; ".join(sorted(set(frame["cpu"].astype(str))))
    table_text = shown.to_markdown(index=False, disable_numparse=True)  # "0.440" stays "0.440"
    lines = [f"On {cpus}; mean ± std over the runs (seeds) of each row.", "", table_text]
    if (table["runs"] < most_runs).any():
        lines += ["", "\\* fewer runs than the other methods: not every seed ran (setfit: `--setfit-seeds`)."]
    return "\n".join(lines)


def figure(frame: pd.DataFrame, path: Path) -> None:
    """Accuracy against N per class, one panel per dataset, one line per method, std as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summary(frame)
    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.8), squeeze=False)
    for axis, name in zip(axes[0], datasets):
        for label, lines in table[table["dataset"] == name].groupby("label", sort=False):
            lines = lines.sort_values("per_class")
            axis.errorbar(
                lines["per_class"],
                lines["accuracy_mean"],
                yerr=lines["accuracy_std"].fillna(0),
                marker="o",
                capsize=3,
                label=label,
            )
        axis.set_xscale("log", base=2)
        ticks = sorted(set(table.loc[table["dataset"] == name, "per_class"]))
        axis.set_xticks(ticks, [str(tick) for tick in ticks])
        axis.set_title(name)
        axis.set_xlabel("training examples per class")
        axis.set_ylabel("test accuracy")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), help="packaged datasets (conf/data/)")
    parser.add_argument("--per-class", nargs="+", type=int, default=[8, 16, 64], help="training rows per class (N)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="the sampling and training seeds")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--max-length", type=int, default=64, help="tokens per text, for every method")
    parser.add_argument("--test-size", type=int, default=1000, help="at most this many rows of the test split")
    parser.add_argument(
        "--finetune-epochs",
        type=int,
        default=10,
        help="trainer.max_epochs of strategy=finetune (textclf's default, 3, is too few for 8 examples per class)",
    )
    parser.add_argument("--setfit-iterations", type=int, default=20, help="setfit's num_iterations")
    parser.add_argument(
        "--setfit-seeds", type=int, help="setfit runs only the first K seeds from --setfit-large per class up (slow)"
    )
    parser.add_argument("--setfit-large", type=int, default=64, help="the N from which --setfit-seeds applies")
    parser.add_argument(
        "--textclf-args",
        nargs="+",
        default=[],
        help="more overrides for both textclf methods, e.g. strategy.num_iterations=2 (part of the runs' settings)",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/figures/fewshot.csv"), help="the CSV, one row per run")
    parser.add_argument("--figure", type=Path, default=Path("docs/figures/fewshot.png"))
    parser.add_argument(
        "--keep", type=Path, help="keep each run's files (train.csv, run dirs, logs) under this folder (default: none)"
    )
    parser.add_argument("--report-only", action="store_true", help="only the table and figure of the existing CSV")
    parser.add_argument("--setfit-run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setfit_run:
        return setfit_run(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    failures = 0 if args.report_only else benchmark(args)
    frame = read_rows(args.out)
    if not frame.empty:
        figure(frame, args.figure)
        print(markdown(frame))
        print(f"\nruns: {args.out}; figure: {args.figure}")
    if failures:
        raise SystemExit(f"{failures} runs failed (their output above); rerun to retry them")
    if frame.empty:
        raise SystemExit(f"{args.out}: no runs")


if __name__ == "__main__":
    main()
