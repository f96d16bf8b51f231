"""`python -m textclf <command> [overrides]`: any `textclf-*` command, for launchers that need a module
(torchrun, `python -m`); `python -m textclf --help` lists the commands."""

from __future__ import annotations

import importlib
import importlib.util
import sys

from textclf.commands import COMMANDS


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {about}" for name, (_, _, about) in COMMANDS.items())
    return (
        "usage: python -m textclf <command> [hydra overrides]\n\ncommands:\n"
        f"{rows}\n\n`python -m textclf <command> --help` shows a command's config and options."
    )


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help", "help"):
        print(usage())
        sys.exit(0 if len(sys.argv) >= 2 else 2)
    name = sys.argv[1]
    if name not in COMMANDS:
        print(f"textclf: error: no command {name!r} (commands: {', '.join(COMMANDS)})", file=sys.stderr)
        sys.exit(2)
    module_name, function, _ = COMMANDS[name]
    sys.argv = [f"textclf-{name}", *sys.argv[2:]]
    # a DDP launcher starts its other processes as `python -m <this module's spec>`: name the command's module
    sys.modules["__main__"].__spec__ = importlib.util.find_spec(module_name)
    getattr(importlib.import_module(module_name), function)()


if __name__ == "__main__":
    main()
