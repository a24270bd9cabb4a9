"""`python -m dev.demo_models.fasttext_train CORPUS OUTPUT PARAMS_JSON`: one fastText training run.

Runs in its own fresh process on purpose: with fasttext 0.9.3, a second training in the same process,
or one after scipy/gensim are loaded, intermittently fails with "Encountered NaN" and is not
reproducible. Alone in a clean process (thread=1, fixed seed) the output is byte-identical run to run.
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
