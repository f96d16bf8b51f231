"""The `textclf-*` commands: each module's `main` is a thin Hydra entry point that calls the library.

`python -m textclf <command> [overrides]` runs the same commands (`python -m textclf --help` lists them).
"""

COMMANDS = {
    "train": ("textclf.commands.train", "main", "fit, validate and test a classifier"),
    "eval": ("textclf.commands.evaluate", "main", "evaluate a checkpoint on a split: metrics, report, pictures"),
    "predict": ("textclf.commands.predict", "main", "predict labels or scores for a file of texts"),
    "explain": ("textclf.commands.explain", "main", "token attributions: which words made it predict that"),
    "export": ("textclf.commands.export", "main", "export a checkpoint: Hugging Face directory or ONNX"),
    "serve": ("textclf.commands.serve", "main", "serve a checkpoint over HTTP (Hugging Face's inference protocol)"),
    "sweep": ("textclf.commands.sweep", "main", "hyper-parameter search with Optuna over textclf-train runs"),
    "sweep-summary": ("textclf.commands.sweep", "summary_main", "the summary table of a sweep or multirun dir"),
    "audit": ("textclf.commands.audit", "main", "find likely label errors, duplicates and outliers (cross-validated)"),
    "select": ("textclf.commands.select", "main", "choose the texts of an unlabelled pool to label next"),
}
