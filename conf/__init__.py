"""Hydra configs of textclf (a package so that `pkg://textclf.conf` finds them when installed)."""
