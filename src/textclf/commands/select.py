"""`textclf-select`: which texts of an unlabelled pool to label next (`textclf.curation.selection`)."""

from __future__ import annotations

from textclf.curation.selection import select
from textclf.running import command_main

main = command_main(select, "select")

if __name__ == "__main__":
    main()
