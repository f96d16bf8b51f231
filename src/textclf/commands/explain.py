"""`textclf-explain`: which tokens made a checkpoint predict what it did, as JSONL or an HTML page
(`textclf.inference.explaining`)."""

from __future__ import annotations

from textclf.inference.explaining import explain
from textclf.running import command_main

main = command_main(explain, "explain")

if __name__ == "__main__":
    main()
