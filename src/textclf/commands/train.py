"""`textclf-train`: fit, then test the best checkpoint (`textclf.training.fit`). The entry point gives
Hydra the metric a sweeper optimizes (`optimized_metric`)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from textclf.running import command_main


def optimized_metric(result: tuple[dict[str, Any], dict[str, Any]], cfg: DictConfig) -> float | None:
    return result[0].get(cfg.get("optimized_metric"))


# imported once the settings passed their check: a mistake costs no import of torch
main = command_main("textclf.training.fit:train", "train", returns=optimized_metric)

if __name__ == "__main__":
    main()
