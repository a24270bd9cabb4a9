"""`python -m dev.demo_models.fasttext_train CORPUS OUTPUT PARAMS_JSON`: one fastText training run.

Runs in its own fresh process on purpose: with fasttext 0.9.3, a second training in the same process,
or one after scipy/gensim are loaded, intermittently fails with "Encountered NaN". Alone in a clean
process (thread=1, fixed seed) it rarely does (outlink.py retries), and the output is nearly always
byte-identical run to run; on a loaded machine we saw the odd run whose weights differ slightly
(same predictions), so tests compare predictions, not bytes.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    corpus, output, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    import fasttext

    fasttext.train_supervised(input=corpus, verbose=0, **params).save_model(output)


if __name__ == "__main__":
    main()
