"""`textclf-audit`: the likely label errors, conflicting duplicates and outliers of a dataset, from
out-of-fold predictions (`textclf.curation.audit`)."""

from __future__ import annotations

from textclf.running import command_main

# imported once the settings passed their check: a mistake costs no import of torch
main = command_main("textclf.curation.audit:audit", "audit")

if __name__ == "__main__":
    main()
