"""Hyper-parameter sweeps: the Optuna study shared by any number of workers (trial budget, heartbeats,
reruns of dead workers' trials), its search space, and the summary tables of sweeps and Hydra multiruns."""

from textclf.lazy import exports

API = {
    "sweep": "textclf.sweep.study",
    "search_space": "textclf.sweep.space",
    "summarize": "textclf.sweep.summary",
    "MultirunSummary": "textclf.sweep.summary",
}
__all__ = list(API)
# the flat layout's `textclf.sweep` was the command's module too
__getattr__ = exports(
    __name__,
    API,
    {"main": "textclf.commands.sweep:main", "summary_main": "textclf.commands.sweep:summary_main"},
)
