"""Hydra configs of textclf (a package so that `pkg://textclf.conf` finds them when installed). Importing it
registers the schema of every config group in Hydra's ConfigStore (`/schema/<name>` in the YAML files'
defaults lists): each module below declares its groups' schemas beside the code that reads them."""

from importlib import import_module

SCHEMA_MODULES = (
    "textclf.config",
    "textclf.data.settings",
    "textclf.model.settings",
    "textclf.training.settings",
    "textclf.inference.settings",
    "textclf.export.settings",
    "textclf.sweep.settings",
    "textclf.serving.settings",
    "textclf.curation.settings",
)
for module in SCHEMA_MODULES:
    import_module(module)
