"""`textclf-export`: a checkpoint as a Hugging Face model directory or an ONNX graph, checked against it
(`textclf.export.exporter`)."""

from __future__ import annotations

from textclf.running import command_main

# imported once the settings passed their check: a mistake costs no import of torch
main = command_main("textclf.export.exporter:export", "export")

if __name__ == "__main__":
    main()
