"""textclf: fine-tune BERT-family transformers for text classification with PyTorch Lightning and Hydra.

The public API, each name imported on first use (so `import textclf` loads no torch, and the inference
names no Lightning):

    from textclf import Predictor
    predictor = Predictor.from_checkpoint("outputs/train/runs/.../checkpoints/best.ckpt")
    predictor.labels_of(predictor.predict_proba(["a wonderful film"]))

The layers, one subpackage each: `data`, `model`, `training` (the only one that imports Lightning),
`inference`, `export`, `sweep`, and `commands` (the `textclf-*` entry points). docs/layout.md tells more.
"""

from textclf.lazy import exports, install_flat_layout_finder

__version__ = "0.1.0"

API = {
    # composing a command's config in-process, and running the commands' functions on it
    "compose_config": "textclf.config",
    "train": "textclf.training.fit",
    "evaluate": "textclf.inference.evaluation",
    "predict": "textclf.inference.prediction",
    # the pieces: data, network, Lightning's two modules, a trained classifier for inference
    "TextClassificationDataModule": "textclf.training.datamodule",
    "build_network": "textclf.model.network",
    "ClassifierNetwork": "textclf.model.network",
    "ClassifierLitModule": "textclf.training.lit_module",
    "load_lit_module": "textclf.training.lit_module",
    "TrainedClassifier": "textclf.model.trained",
    "load_trained": "textclf.model.loading",
    "Predictor": "textclf.inference.predictor",
    "explain_texts": "textclf.inference.explanation",
    # what a user's mistake raises: one line naming the file, row, key or checkpoint
    "TextclfError": "textclf.errors",
    "DataError": "textclf.errors",
    "SettingError": "textclf.errors",
    "CheckpointError": "textclf.errors",
    "OutputError": "textclf.errors",
}
__all__ = [*API, "__version__"]
__getattr__ = exports(__name__, API)
install_flat_layout_finder()
