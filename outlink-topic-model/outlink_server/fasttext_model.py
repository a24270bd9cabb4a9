"""Loading and running the fastText model; the only module that imports fasttext.

fastText trusts its input file: a truncated binary can load as garbage or abort the process with
`std::bad_alloc`. So the file's header and the end of the output matrix are checked first, and a bad file
is reported by name instead of crashing the server at start-up.
"""

from __future__ import annotations

import struct
from pathlib import Path

import fasttext

FASTTEXT_MAGIC = 793712314  # first int32 of every fastText binary
FASTTEXT_VERSION = 12
FASTTEXT_LOG_EPSILON = 1e-5  # fastText's std_log(x) is log(x + 1e-5)
_HEADER = struct.Struct("<ii12id")  # magic, version, 12 int args (dim first), sampling threshold t
_DICT_HEADER = struct.Struct("<iiiqq")  # size, nwords, nlabels, ntokens, prune index size
_MATRIX_HEADER = struct.Struct("<?qq")  # quantised?, rows, columns


class ModelLoadError(Exception):
    """The model binary is missing or is not a complete supervised fastText model."""


class TopicModel:
    """A supervised fastText model whose labels are topics (`__label__STEM.Physics`)."""

    def __init__(self, path: Path) -> None:
        check_binary(path)
        try:
            self._model = fasttext.load_model(str(path))
        except (ValueError, MemoryError, RuntimeError) as error:
            raise ModelLoadError(f"{path} is not a usable fastText model: {error}") from None
        prefix = self._model.f.getArgs().label
        self.topics = [label.removeprefix(prefix) for label in self._model.get_labels()]
        if not self.topics:
            raise ModelLoadError(f"{path} is a fastText model without labels, not a topic classifier.")
        self._prefix_length = len(prefix)

    def scores(self, features: str) -> list[tuple[str, float]]:
        """Every topic's probability for space-separated Q-ids (the caller ensures there is no newline).

        No Q-ids (a page without outlinks) gives no topics, without asking fastText: it would list every
        topic with probability 0, which says nothing about the page."""
        if not features:
            return []
        labels, probabilities = self._model.predict(features, k=-1, threshold=0.0)
        cut = self._prefix_length
        pairs = zip(labels, probabilities, strict=True)
        return [(label[cut:], probability(float(score))) for label, score in pairs]


def probability(fasttext_score: float) -> float:
    """fastText ranks by log(p + 1e-5), so `predict` returns p + 1e-5 (a certain topic scores 1.00001)."""
    return min(1.0, max(0.0, fasttext_score - FASTTEXT_LOG_EPSILON))


def check_binary(path: Path) -> None:
    """Fails with a clear message unless `path` looks like a complete, non-quantised supervised model."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(_HEADER.size + _DICT_HEADER.size)
            if len(head) < _HEADER.size + _DICT_HEADER.size:
                raise ModelLoadError(f"{path} is too short ({size} bytes) to be a fastText model.")
            magic, version, dim, *_ = _HEADER.unpack_from(head)
            if magic != FASTTEXT_MAGIC or version > FASTTEXT_VERSION:
                raise ModelLoadError(f"{path} is not a fastText binary (wrong magic number or version).")
            nlabels = _DICT_HEADER.unpack_from(head, _HEADER.size)[2]
            # The file ends with the output matrix: one row of `dim` floats per label.
            trailer_at = size - _MATRIX_HEADER.size - 4 * nlabels * dim
            if dim <= 0 or nlabels <= 0 or trailer_at < _HEADER.size:
                raise ModelLoadError(f"{path} is truncated or is not a supervised fastText model.")
            handle.seek(trailer_at)
            quantised, rows, columns = _MATRIX_HEADER.unpack(handle.read(_MATRIX_HEADER.size))
    except OSError as error:
        raise ModelLoadError(f"Cannot read the model binary {path}: {error.strerror or error}") from None
    if quantised or (rows, columns) != (nlabels, dim):
        raise ModelLoadError(f"{path} is truncated or corrupt: its output matrix does not match its header.")

