"""`textclf-select`: which texts of an unlabelled pool to label next (`textclf.curation.selection`)."""

from __future__ import annotations

from textclf.running import command_main

# imported once the settings passed their check: a mistake costs no import of torch
main = command_main("textclf.curation.selection:select", "select")

if __name__ == "__main__":
    main()
