"""The one `textclf` logger. Under Hydra its records reach the console and the run's log file (Hydra's
job logging: `train.log` for `textclf-train`); under several processes only rank 0 writes, so a DDP run
does not print every line once per process."""

from __future__ import annotations

import logging
import os

# the object on which Lightning sets each process's rank, from the small package Lightning keeps it in:
# importing Lightning itself would slow a command that never trains (textclf-predict; docs/performance.md)
from lightning_utilities.core.rank_zero import rank_zero_only

# where Lightning reads the rank before its strategy sets it, in Lightning's order
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def process_rank() -> int:
    """Lightning's rank of this process once Lightning is imported, else the launcher's (e.g. torchrun's)."""
    rank = getattr(rank_zero_only, "rank", None)
    if rank is None:
        rank = next((int(os.environ[name]) for name in RANK_VARIABLES if name in os.environ), 0)
    return rank


class RankZeroFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return process_rank() == 0


log = logging.getLogger("textclf")
log.addFilter(RankZeroFilter())
log.setLevel(logging.INFO)


def duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}" if minutes >= 60 else f"{minutes}:{seconds:02d}"
