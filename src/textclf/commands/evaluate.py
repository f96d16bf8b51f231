"""`textclf-eval`: metrics, per-class report, confusion matrix and misclassified examples of a checkpoint
on a split (`textclf.inference.evaluation`)."""

from __future__ import annotations

from textclf.inference.evaluation import evaluate
from textclf.running import command_main

main = command_main(evaluate, "eval")

if __name__ == "__main__":
    main()
