"""`textclf-export`: a checkpoint as a Hugging Face model directory or an ONNX graph, checked against it
(`textclf.export.exporter`)."""

from __future__ import annotations

from textclf.export.exporter import export
from textclf.running import command_main

main = command_main(export, "export")

if __name__ == "__main__":
    main()
