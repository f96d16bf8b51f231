"""`textclf-predict`: a checkpoint's predictions for a file of texts, written chunk by chunk
(`textclf.inference.prediction`)."""

from __future__ import annotations

from textclf.running import command_main

# imported once the settings passed their check: a mistake costs no import of torch
main = command_main("textclf.inference.prediction:predict", "predict")

if __name__ == "__main__":
    main()
