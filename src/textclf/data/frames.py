"""The contract between data sources and the rest: splits as pandas frames keyed by split name. A leaf
module, so that every source (packaged sets, files, Hugging Face datasets) can name it without importing
the others."""

from __future__ import annotations

import pandas as pd

Splits = dict[str, pd.DataFrame]


SPLITS = ("train", "val", "test")
