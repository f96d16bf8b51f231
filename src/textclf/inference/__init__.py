"""The inference layer, without Lightning: the Predictor (batched, length-sorted, 16-bit weights), and the
functions behind `textclf-predict` (reading inputs, writing predictions chunk by chunk) and `textclf-eval`."""

from textclf.lazy import exports

API = {
    "Predictor": "textclf.inference.predictor",
    "predict": "textclf.inference.prediction",
    "evaluate": "textclf.inference.evaluation",
    "TextProgress": "textclf.inference.progress",
}
__all__ = list(API)
__getattr__ = exports(__name__, API)
