"""The training layer, the only one that imports Lightning: the DataModule and the LightningModule, resuming
exactly after a kill, callbacks (pictures, progress lines), trackers, cross-validation, pruning, and
`train(cfg)`, the function behind `textclf-train`."""

from textclf.lazy import exports

API = {
    "train": "textclf.training.fit",
    "TextClassificationDataModule": "textclf.training.datamodule",
    "ClassifierLitModule": "textclf.training.lit_module",
    "load_lit_module": "textclf.training.lit_module",
    "cross_validate": "textclf.training.crossval",
}
__all__ = list(API)
__getattr__ = exports(__name__, API)
