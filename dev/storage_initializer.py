"""The init container of the local pod: KServe's own storage code, called as KServe's storage-initializer
image calls it.

    python storage_initializer.py STORAGE_URI DEST    # e.g. s3://wmf-ml-models/damaging/enwiki/1/ /mnt/models

`kserve.storage.Storage.download` (the pinned kserve 0.13.1, `storage` extra) reads the S3 endpoint and
credentials from the variables KServe gives the init container (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, S3_USE_HTTPS, S3_VERIFY_SSL, AWS_DEFAULT_REGION). A URI that names nothing fails with
one line naming it, and a non-zero exit code, so the pod's server never starts.
"""

from __future__ import annotations

import logging
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: storage_initializer.py STORAGE_URI DEST", file=sys.stderr)
        return 2
    uri, destination = argv
    logging.basicConfig(level=logging.INFO, format="storage-initializer %(levelname)s %(message)s")
    from kserve.storage import Storage

    try:
        Storage.download(uri, destination)
    except Exception as error:  # noqa: BLE001 - any failure ends the init container with its reason
        print(f"storage-initializer: cannot download {uri}: {error}", file=sys.stderr)
        return 1
    print(f"storage-initializer: {uri} -> {destination}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
