"""`inspect-otel` command line: each subcommand lives in its own module.

A subcommand module exposes ``add_arguments(parser)`` and ``main(args) -> int``; it is imported
only when used, so ``inspect-otel export`` works without the MLflow extra installed.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
_COMMANDS: dict[str, tuple[str, str]] = {
    "export": ("inspect_otel.replay", "send finished .eval/.json logs over OTLP like the live hook"),
    "receiver": ("inspect_otel.receiver.cli", "run the OTLP receiver that writes to MLflow"),
    "up": ("inspect_otel.stack.cli", "start MLflow and the receiver locally (no Docker)"),
    "demo": ("inspect_otel.demo", "run a bundled offline eval into the local stack"),
    "compare": ("inspect_otel.compare.cli",
                "compare two evals (logs or MLflow runs): paired, epoch-aware significance tests"),
    "scout-import": ("inspect_otel.scout.cli",
                     "import traces (OTLP files or MLflow) into an Inspect Scout transcript database"),
}


def _build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inspect-otel", description="OpenTelemetry for Inspect AI evaluations."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        # Only the chosen subcommand's module is imported (its extras may be missing).
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args._main(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
