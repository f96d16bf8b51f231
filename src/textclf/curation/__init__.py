"""The curation layer, above training: the audit of a dataset's labels from out-of-fold predictions
(`textclf-audit`, which trains the folds) and the choice of texts to label next (`textclf-select`, which
needs only the inference layer: it loads no Lightning)."""

from textclf.lazy import exports

API = {
    "audit": "textclf.curation.audit",
    "find_issues": "textclf.curation.issues",
    "select": "textclf.curation.selection",
}
__all__ = list(API)
__getattr__ = exports(__name__, API)
