"""What users already have keeps working across the package's move to subpackages: the flat layout's
module paths in their own configs (`_target_`) and imports, a run killed under the flat layout resumed
by today's code, `python -m textclf <command>`; and `import textclf` stays light."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import FIXTURES, TESTS, compose_cfg, toy_reviews, toy_training
from resume_runs import final_metrics, train_command

from textclf.training.fit import train

OLD_TARGETS = {
    "model": "textclf.module.TextClassifier",
    "net": "textclf.network.build_network",
    "data": "textclf.data.TextClassificationDataModule",
    "last_checkpoint": "textclf.resuming.LastCheckpoint",
    "progress_log": "textclf.progress.ProgressLog",
    "confusion_matrix": "textclf.monitoring.ConfusionMatrixLogger",
}


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_import_textclf_loads_no_torch_and_its_inference_api_no_lightning() -> None:
    result = python(
        "import sys, textclf\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'lightning', 'hydra'}))\n"
        "from textclf import Predictor, load_trained, TrainedClassifier, DataError\n"
        "print('lightning' in sys.modules, 'torch' in sys.modules, Predictor.__module__)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "False True textclf.inference.predictor"]


def test_python_dash_m_textclf_runs_the_same_functions_as_the_installed_scripts() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    from textclf.commands import COMMANDS

    scripts = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())["project"]["scripts"]
    assert {f"textclf-{name}": f"{module}:{function}" for name, (module, function, _) in COMMANDS.items()} == scripts


def test_python_dash_m_textclf_lists_and_runs_the_commands(tmp_path: Path) -> None:
    listed = subprocess.run([sys.executable, "-m", "textclf", "--help"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0
    for command in (
        "train",
        "eval",
        "predict",
        "explain",
        "export",
        "serve",
        "sweep",
        "sweep-summary",
        "audit",
        "select",
    ):
        assert f"\n  {command} " in listed.stdout
    unknown = subprocess.run([sys.executable, "-m", "textclf", "trian"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "textclf: error: no command 'trian' (commands: " + (
        "train, eval, predict, explain, export, serve, sweep, sweep-summary, audit, select)"
    )
    summary = subprocess.run(
        [sys.executable, "-m", "textclf", "sweep-summary", str(tmp_path / "none")], capture_output=True, text=True
    )
    assert summary.returncode == 2 and summary.stderr.strip().endswith("none: no such sweep dir")


@pytest.mark.slow
def test_a_config_folder_naming_the_flat_layout_targets_still_trains_with_a_warning_naming_the_new_path(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A user's own config folder, written for the flat layout, joined with hydra.searchpath."""
    conf = tmp_path / "my_conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "old.yaml").write_text(
        "defaults:\n  - default\n  - _self_\n"
        f"_target_: {OLD_TARGETS['model']}\nnet:\n  _target_: {OLD_TARGETS['net']}\n"
    )
    csv = tmp_path / "reviews.csv"
    toy_reviews(600).to_csv(csv, index=False)
    cfg = compose_cfg(
        tmp_path / "run",
        tiny_model_dir,
        f"hydra.searchpath=[file://{conf}]",
        "model=old",
        f"data._target_={OLD_TARGETS['data']}",
        f"callbacks.last_checkpoint._target_={OLD_TARGETS['last_checkpoint']}",
        f"callbacks.progress_log._target_={OLD_TARGETS['progress_log']}",
        f"callbacks.confusion_matrix._target_={OLD_TARGETS['confusion_matrix']}",
        *toy_training(csv),
    )
    assert cfg.model._target_ == OLD_TARGETS["model"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics, _ = train(cfg)
    messages = {str(warning.message) for warning in caught if warning.category is DeprecationWarning}
    for old in OLD_TARGETS.values():
        assert any(message.startswith(f"{old} moved to textclf.") for message in messages), old
    assert "textclf.module.TextClassifier moved to textclf.training.lit_module.ClassifierLitModule" in " ".join(
        messages
    )
    assert metrics["test/acc"] > 0.9


def test_old_imports_warn_and_give_the_moved_objects() -> None:
    from textclf.inference.predictor import Predictor
    from textclf.model.loading import load_trained
    from textclf.training.lit_module import load_lit_module

    with pytest.warns(DeprecationWarning, match="textclf.checkpoints.load_classifier moved to .*load_lit_module"):
        from textclf.checkpoints import load_classifier
    with pytest.warns(DeprecationWarning, match="textclf.checkpoints.load_trained moved to textclf.model.loading"):
        from textclf.checkpoints import load_trained as old_load_trained
    with pytest.warns(DeprecationWarning, match="textclf.data.TextClassificationDataModule moved to textclf.training"):
        from textclf.data import TextClassificationDataModule
    import textclf.inference  # a package now, whose API holds what the flat module held: no warning

    assert textclf.inference.Predictor is Predictor and TextClassificationDataModule.__module__ == (
        "textclf.training.datamodule"
    )
    assert load_classifier is load_lit_module and old_load_trained is load_trained


@pytest.mark.slow
def test_a_run_killed_under_the_flat_layout_resumes_and_ends_as_that_run_did_uninterrupted(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """tests/fixtures/flat_layout/last.ckpt: the toy run of the resume tests (2 epochs, last.ckpt every 5
    steps, batches padded to a multiple of 4) killed at step 17 by the flat-layout code, and the metrics that
    run gave uninterrupted there."""
    csv = tmp_path / "reviews.csv"
    toy_reviews(600).to_csv(csv, index=False)
    run = tmp_path / "killed"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(FIXTURES / "flat_layout" / "last.ckpt", run / "checkpoints" / "last.ckpt")
    resumed = train_command(run, tiny_model_dir, csv, f"resume={run}", "data.pad_to_multiple_of=4")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from {run / 'checkpoints' / 'last.ckpt'} at step 15" in resumed.stderr
    expected = json.loads((FIXTURES / "flat_layout" / "expected_metrics.json").read_text())
    metrics = final_metrics(run)
    assert metrics["best_model_path"] == expected.pop("best_model_path")
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
