"""The local MediaWiki farm: every wiki of the seed table behind one `php -S` endpoint.

`setup()` builds `.state/farm/` (idempotent), `running_farm()` serves it, `load_manifest()` tells what
was seeded. CLI: `python -m dev.mediawiki_farm setup|serve|reset`. See README.md beside this file.
"""

from dev.mediawiki_farm.build import FarmError, FarmPaths, load_manifest, reset, setup
from dev.mediawiki_farm.server import DEFAULT_PORT, RunningFarm, running_farm

__all__ = ["DEFAULT_PORT", "FarmError", "FarmPaths", "RunningFarm", "load_manifest", "reset", "running_farm",
           "setup"]
