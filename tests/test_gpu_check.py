"""scripts/gpu_check.py, the check that runs when a GPU machine is lent: its dry run (the same steps on the
CPU, tiny models) passes every step, and the device call that docs/gpu.md gives fits the scripts and the
device tool's limits."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import child_env

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
DOCS = (ROOT / "docs" / "gpu.md").read_text()
MAX_COMMAND, MAX_CARRIED_PATHS = 2000, 8  # the device tool's `run`


def load_gpu_check():
    """scripts/gpu_check.py as a module (it imports only the standard library)."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPTS / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def documented_call() -> dict:
    """The device tool call of docs/gpu.md, its one JSON block."""
    (block,) = re.findall(r"```json\n\s*(\{.*?\})\n\s*```", DOCS, re.DOTALL)
    return json.loads(block)


@pytest.mark.dry_run  # every step, as child processes: minutes on a 2-core CPU (make gpu-dry-run)
@pytest.mark.slow
def test_the_dry_run_passes_every_step_and_reports_each(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS / "gpu_check.py"), "--dry-run", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=child_env() | {"OMP_NUM_THREADS": "1"},
        timeout=1700,
    )
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    failed = {name: step for name, step in report["steps"].items() if step["status"] != "passed"}
    assert not failed, completed.stdout[-3000:]
    assert list(report["steps"]) == list(load_gpu_check().STEPS)
    assert completed.returncode == 0 and report["passed"] and report["dry_run"]
    steps = report["steps"]
    assert steps["experiment_bf16"]["figures"]["precision"] == "bf16-mixed"
    assert steps["experiment_bf16"]["figures"]["train_samples_per_s"] > 0
    assert set(steps["speedups_minilm"]["figures"]["variants"]) == {
        "defaults",
        "bf16_residual=false",
        "skip_unused_tokens=false",
        "attn_implementation=eager",
        "attn_implementation=sdpa",
        "fast_dropout=toggled",
    }
    assert set(steps["benchmark_base"]["figures"]["results"]) == {"textclf", "hf_dynamic_bf16"}
    assert steps["predict"]["figures"]["batch_512"]["texts"] == 400  # every row of the dry run's carry
    assert (tmp_path / "gpu_check.log").stat().st_size > 0


def test_the_documented_device_call_runs_the_check_with_what_the_carry_script_writes() -> None:
    call = documented_call()
    carry_script = (SCRIPTS / "gpu_carry.sh").read_text()
    (carried,) = re.findall(r"^CARRY=(\S+)$", carry_script, re.MULTILINE)
    assert call["carry"] == [carried] and len(call["carry"]) <= MAX_CARRIED_PATHS
    assert f"{carried}/" in (ROOT / ".gitignore").read_text().splitlines()  # sent only as a carried path
    assert len(call["command"]) <= MAX_COMMAND and call["command"].startswith("bash scripts/gpu_check.sh ")
    assert call["timeout_s"] <= 600 and call["timeout_s"] - 60 > load_gpu_check().BUDGET_S


def test_every_step_is_documented_and_every_dependency_is_on_the_machine_or_carried() -> None:
    steps = load_gpu_check().STEPS
    documented = set(re.findall(r"^\| `(\w+)`(?:, `(\w+)`)? \|", DOCS, re.MULTILINE))
    assert {name for pair in documented for name in pair if name} == set(steps)
    order = re.search(r"say so\): (.*?)\.\n", DOCS, re.DOTALL).group(1)
    assert [name.strip() for name in order.split(",")] == list(steps)
    carried = re.search(r"^WHEELS=\((.*?)\)$", (SCRIPTS / "gpu_carry.sh").read_text(), re.MULTILINE | re.DOTALL)
    carried_names = {line.split("==")[0].lower() for line in carried.group(1).split()}
    on_the_machine = re.search(r"The machine already has everything else textclf needs \((.*?)\)", DOCS, re.DOTALL)
    machine_names = {name.strip().lower() for name in on_the_machine.group(1).split(",")}
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {re.split(r"[<>=\[ ]", requirement)[0].lower() for requirement in pyproject["project"]["dependencies"]}
    assert needed - machine_names <= carried_names, needed - machine_names - carried_names
