"""`python -m dev.mediawiki_farm setup|serve|reset`."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from dev.mediawiki_farm.build import DEFAULT_STATE_DIR, FarmError, reset, setup
from dev.mediawiki_farm.server import DEFAULT_PORT, DEFAULT_WORKERS, running_farm


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dev.mediawiki_farm", description=__doc__)
    parser.add_argument("command", choices=["setup", "serve", "reset"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="PHP_CLI_SERVER_WORKERS")
    parser.add_argument("--jobs", type=int, default=2, help="wikis seeded in parallel")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date (setup)")
    return parser.parse_args(argv)


def serve(args: argparse.Namespace) -> None:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with running_farm(args.port, args.state_dir, workers=args.workers, quiet=False) as farm:
        print(f"farm: serving {len(farm.manifest)} wikis at {farm.api_url} (Host header picks the wiki); "
              "Ctrl-C stops", flush=True)
        while not stop.wait(1.0):
            if farm.process is not None and farm.process.poll() is not None:
                raise FarmError(f"php -S exited with {farm.process.returncode}")
    print("farm: stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "setup":
            print(f"farm: manifest at {setup(args.state_dir, force=args.force, jobs=args.jobs)}")
        elif args.command == "reset":
            print(f"farm: manifest at {reset(args.state_dir, jobs=args.jobs)}")
        else:
            serve(args)
    except FarmError as error:
        print(f"farm: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
