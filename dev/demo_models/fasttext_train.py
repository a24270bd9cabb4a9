"""`python -m dev.demo_models.fasttext_train CORPUS OUTPUT PARAMS_JSON`: one fastText training run.

Runs in its own fresh process on purpose: with fasttext 0.9.3, a second training in the same process,
or one after scipy/gensim are loaded, intermittently fails with "Encountered NaN".

Even alone (thread=1, fixed seed), fasttext 0.9.3's output depends on where the process's memory is
mapped: on this machine 13 trainings in 30 gave weights of their own (one moved a confident topic's
score by more than 0.05), and all 30 were byte-identical with address randomisation turned off
(`setarch -R`). So the process first re-executes itself with randomisation off for itself only (Linux
`personality(ADDR_NO_RANDOMIZE)`, which an unprivileged process may set); where the kernel refuses,
it trains anyway and says so on stderr.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

ADDR_NO_RANDOMIZE = 0x0040000  # from <linux/personality.h>
QUERY_PERSONALITY = 0xFFFFFFFF


def _reexecute_with_fixed_addresses() -> None:
    """Returns when randomisation is already off (or can't be turned off); else replaces this process."""
    libc = ctypes.CDLL(None, use_errno=True)
    current = libc.personality(QUERY_PERSONALITY)
    if current != -1 and current & ADDR_NO_RANDOMIZE:
        return
    if current == -1 or libc.personality(current | ADDR_NO_RANDOMIZE) == -1:
        print(f"fasttext_train: address randomisation stays on ({os.strerror(ctypes.get_errno())}); "
              "the model may differ slightly from run to run", file=sys.stderr)
        return
    os.execv(sys.executable, [sys.executable, "-m", __spec__.name, *sys.argv[1:]])


def main() -> None:
    corpus, output, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    _reexecute_with_fixed_addresses()
    import fasttext

    fasttext.train_supervised(input=corpus, verbose=0, **params).save_model(output)


if __name__ == "__main__":
    main()
