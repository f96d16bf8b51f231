"""`textclf-explain`: which tokens made a checkpoint predict what it did, as JSONL or an HTML page
(`textclf.inference.explaining`)."""

from __future__ import annotations

from textclf.running import command_main

# imported once the settings passed their check: a mistake costs no import of torch
main = command_main("textclf.inference.explaining:explain", "explain")

if __name__ == "__main__":
    main()
