"""`python -m revscoring_server.ores`: the `ores` image's entrypoint (see proxy.py)."""

import sys

from revscoring_server.ores.proxy import main

sys.exit(main())
