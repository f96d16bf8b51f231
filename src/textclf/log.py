"""The one `textclf` logger. Under Hydra its records reach the console and the run's log file (Hydra's
job logging: `train.log` for `textclf-train`); under several processes only rank 0 writes, so a DDP run
does not print every line once per process."""

from __future__ import annotations

import logging

from lightning.fabric.utilities.rank_zero import rank_zero_only


class RankZeroFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(rank_zero_only, "rank", 0) == 0


log = logging.getLogger("textclf")
log.addFilter(RankZeroFilter())
log.setLevel(logging.INFO)
