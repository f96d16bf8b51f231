"""`textclf-serve`: a checkpoint behind an HTTP server (`textclf.serving.server`)."""

from __future__ import annotations

from omegaconf import DictConfig

from textclf.errors import SettingError
from textclf.running import command_main


def serve_checkpoint(cfg: DictConfig) -> None:
    try:  # FastAPI, uvicorn and prometheus-client: the `serve` extra, imported by this command only
        from textclf.serving.server import serve
    except ImportError as error:
        raise SettingError(f"textclf-serve needs the serve extra: pip install 'textclf[serve]' ({error})") from None
    serve(cfg)


main = command_main(serve_checkpoint, "serve")

if __name__ == "__main__":
    main()
