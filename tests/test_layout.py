"""The package's layers, read from the source with ast: which modules may import Lightning, that the library
never imports a command, no import cycle, units that read in one screen; and what the inference commands
import when they run."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import LIGHTNING

import textclf

PACKAGE = Path(textclf.__file__).parent
# the layers above the Lightning boundary: training itself, the sweep that runs it, and their commands
MAY_USE_LIGHTNING = ("textclf.training", "textclf.commands.train", "textclf.commands.sweep")
MAY_USE_TRAINING = (*MAY_USE_LIGHTNING, "textclf.sweep", "textclf.curation.audit", "textclf.curation.settings")
MAY_USE_COMMANDS = ("textclf.commands", "textclf.__main__")
MAX_CLASS_LINES, MAX_FUNCTION_LINES = 150, 60
# each layer imports only those below it (docs/layout.md); the top-level modules are leaves every layer shares
LAYERS = {
    "data": 1,
    "model": 2,
    "inference": 3,
    "export": 3,
    "serving": 4,
    "training": 4,
    "sweep": 5,
    "curation": 5,
    "commands": 6,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py") if "conf" not in path.relative_to(PACKAGE).parts}


def is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function, but not under `if TYPE_CHECKING:`."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if is_type_checking_block(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


IMPORTS = {name: imports_of(path) for name, path in MODULES.items()}


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def test_only_training_and_its_commands_import_lightning() -> None:
    offenders = {
        module: sorted(name for name in imports if name.split(".")[0] in LIGHTNING)
        for module, imports in IMPORTS.items()
        if not within(module, MAY_USE_LIGHTNING)
    }
    assert not {module: names for module, names in offenders.items() if names}
    offenders = {
        module: sorted(name for name in imports if within(name, ("textclf.training",)))
        for module, imports in IMPORTS.items()
        if not within(module, MAY_USE_TRAINING)
    }
    assert not {module: names for module, names in offenders.items() if names}, "below training, imports training"


def layer_of(module: str) -> int:
    """The layer of a module; 0 for the shared leaves at the top of the package."""
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 and parts[1] in LAYERS else 0


def test_each_layer_imports_only_the_layers_below_it() -> None:
    upward = sorted(
        f"{module} imports {name}"
        for module, imports in IMPORTS.items()
        for name in imports
        if name in MODULES and layer_of(name) >= layer_of(module) > 0 and name.split(".")[1] != module.split(".")[1]
    )
    assert not upward
    leaves_importing_layers = sorted(
        f"{module} imports {name}"
        for module, imports in IMPORTS.items()
        for name in imports
        if name in MODULES
        and layer_of(module) == 0
        and layer_of(name) > 0
        and module not in ("textclf", "textclf.__main__")
    )
    assert not leaves_importing_layers


def test_the_library_never_imports_a_command() -> None:
    offenders = {
        module: sorted(name for name in imports if within(name, MAY_USE_COMMANDS))
        for module, imports in IMPORTS.items()
        if not within(module, MAY_USE_COMMANDS)
    }
    assert not {module: names for module, names in offenders.items() if names}


def test_no_import_cycle() -> None:
    graph = {
        module: {name for name in imports if name in MODULES and name != module} for module, imports in IMPORTS.items()
    }
    done: set[str] = set()

    def walk(module: str, path: list[str]) -> None:
        if module in path:
            pytest.fail("import cycle: " + " -> ".join(path[path.index(module) :] + [module]))
        if module in done:
            return
        for imported in sorted(graph[module]):
            walk(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        walk(module, [])


def test_every_class_and_function_reads_in_one_screen() -> None:
    too_long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([decorator.lineno for decorator in node.decorator_list] + [node.lineno])
                lines, limit = (
                    node.end_lineno - first + 1,
                    MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES,
                )
                if lines > limit:
                    too_long.append(f"{name}.{node.name}: {lines} lines (at most {limit})")
    assert not too_long


@pytest.mark.slow
def test_predict_explain_export_eval_and_select_never_import_lightning_and_only_eval_torchmetrics() -> None:
    # each command module, then the module of the function it runs once its settings passed their check
    code = (
        "import json, sys\n"
        "loaded = {}\n"
        "for module, runs in (('textclf.commands.predict', 'textclf.inference.prediction'),\n"
        "        ('textclf.commands.export', 'textclf.export.exporter'),\n"
        "        ('textclf.commands.explain', 'textclf.inference.explaining'),\n"
        "        ('textclf.commands.select', 'textclf.curation.selection'),\n"
        "        ('textclf.commands.evaluate', 'textclf.inference.evaluation')):\n"
        "    __import__(module)\n"
        "    loaded[module + ':settings'] = sorted({name.split('.')[0] for name in sys.modules})\n"
        "    __import__(runs)\n"
        "    loaded[module] = sorted({name.split('.')[0] for name in sys.modules})\n"
        "print(json.dumps(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert "torch" in loaded["textclf.commands.predict"]  # the check sees what was imported
    # the settings are checked before torch is imported: a mistake costs no import of it
    assert "torch" not in loaded["textclf.commands.predict:settings"]
    for module, absent in (
        ("textclf.commands.predict", (*LIGHTNING, "torchmetrics")),
        ("textclf.commands.export", (*LIGHTNING, "torchmetrics")),
        ("textclf.commands.explain", (*LIGHTNING, "torchmetrics", "captum")),  # captum when explaining
        ("textclf.commands.evaluate", LIGHTNING),  # evaluation computes metrics: torchmetrics is its business
        ("textclf.commands.select", (*LIGHTNING, "torchmetrics")),
    ):
        assert not set(absent) & set(loaded[module]), f"{module} imports {set(absent) & set(loaded[module])}"
