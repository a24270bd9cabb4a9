"""Start-up shared by both servers: KServe's command-line arguments and the settings they override."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence

from outlink_server import MODEL_NAME
from wikiserve.config import OUTLINK, ServerSettings, read_settings_or_exit


def argument_parser(description: str) -> argparse.ArgumentParser:
    """The arguments KServe passes to model containers; others it may add are ignored (parse_known_args)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model_name", default=MODEL_NAME, help="name on /v1/models/<name>:predict")
    parser.add_argument("--http_port", type=int, default=None, help="overrides HTTP_PORT (default 8080)")
    return parser


def parse(parser: argparse.ArgumentParser,
          argv: Sequence[str] | None) -> tuple[argparse.Namespace, ServerSettings]:
    args, _ = parser.parse_known_args(argv)
    # Every variable of the outlink servers is checked here, once, before anything loads: a bad one ends the
    # process with exit code 2 and a message naming it.
    settings = ServerSettings.from_values(read_settings_or_exit(os.environ, OUTLINK))
    if args.http_port is not None:
        settings = dataclasses.replace(settings, http_port=args.http_port)
    return args, settings
