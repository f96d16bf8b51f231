"""The inference layer, without Lightning: the Predictor (batched, length-sorted, 16-bit weights), and the
functions behind `textclf-predict` (reading inputs, writing predictions chunk by chunk), `textclf-eval`
and `textclf-explain` (token attributions: `explain_texts`)."""

from textclf.lazy import exports

API = {
    "Predictor": "textclf.inference.predictor",
    "predict": "textclf.inference.prediction",
    "evaluate": "textclf.inference.evaluation",
    "explain": "textclf.inference.explaining",
    "explain_texts": "textclf.inference.explanation",
    "Explainer": "textclf.inference.explanation",
    "TextProgress": "textclf.inference.progress",
}
__all__ = list(API)
__getattr__ = exports(__name__, API)
