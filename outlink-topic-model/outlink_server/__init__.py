"""Lift Wing's outlink topic model: a fastText model over the Wikidata items a Wikipedia article links to.

`predictor` serves the model (and fetches outlinks itself when run alone); `transformer` fetches outlinks
and calls the predictor over HTTP. Everything else is shared by both and must not import fasttext.
"""

MODEL_NAME = "outlink-topic-model"
