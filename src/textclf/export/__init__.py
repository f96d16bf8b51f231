"""Exports of a trained checkpoint, each checked against it: a Hugging Face model directory with its model
card, or an ONNX graph. `export(cfg)` is the function behind `textclf-export`."""

from textclf.lazy import exports

API = {
    "export": "textclf.export.exporter",
    "to_hf": "textclf.export.hf",
    "to_onnx": "textclf.export.onnx",
}
__all__ = list(API)
# the flat layout's `textclf.export` was the command's module
__getattr__ = exports(__name__, API, {"main": "textclf.commands.export:main"})
