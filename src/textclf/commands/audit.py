"""`textclf-audit`: the likely label errors, conflicting duplicates and outliers of a dataset, from
out-of-fold predictions (`textclf.curation.audit`)."""

from __future__ import annotations

from textclf.curation.audit import audit
from textclf.running import command_main

main = command_main(audit, "audit")

if __name__ == "__main__":
    main()
