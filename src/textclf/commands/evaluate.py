"""`textclf-eval`: metrics, per-class report, confusion matrix and misclassified examples of a checkpoint
on a split (`textclf.inference.evaluation`)."""

from __future__ import annotations

from textclf.running import command_main

# imported once the settings passed their check: a mistake costs no import of torch
main = command_main("textclf.inference.evaluation:evaluate", "eval")

if __name__ == "__main__":
    main()
