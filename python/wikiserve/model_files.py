"""Where a server finds its model binary: the one file KServe's storage initializer put in /mnt/models.

The storage initializer downloads the object named in `STORAGE_URI` into `/mnt/models` under the object's
own name (`model.bin`, `model.bz2`, `enwiki.damaging.gradient_boosting.model`, ...), so the server cannot
assume a file name. `MODEL_PATH` overrides the search: a file is used as it is, a folder is searched the
same way as `/mnt/models`.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_DIR = Path("/mnt/models")


class ModelFileError(ValueError):
    """No model file, or more than one candidate: start-up cannot tell which binary to serve."""


def resolve_model_file(model_path: str | None, model_dir: Path = DEFAULT_MODEL_DIR) -> Path:
    """The binary to serve: `model_path` when it names a file, else the one model file in the folder.

    A `model_path` that does not exist is returned as it is, so the loader reports it with the path.
    """
    if model_path:
        path = Path(model_path)
        return single_model_file(path) if path.is_dir() else path
    return single_model_file(model_dir)


def single_model_file(folder: Path) -> Path:
    """The only model file in `folder`; ModelFileError listing what is there when there is none or several."""
    if not folder.is_dir():
        raise ModelFileError(
            f"Model folder {folder} does not exist: mount the model there or set MODEL_PATH to the binary."
        )
    candidates = model_files(folder)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        found = sorted(entry.name for entry in folder.iterdir())
        raise ModelFileError(
            f"No model file in {folder} (found {_listing(found)}): mount the model there or set MODEL_PATH."
        )
    raise ModelFileError(
        f"Several model files in {folder} ({_listing([path.name for path in candidates])}): "
        "set MODEL_PATH to the one to serve."
    )


def model_files(folder: Path) -> list[Path]:
    """Regular files of `folder`, hidden ones (the storage initializer's own markers) left out."""
    return sorted(path for path in folder.iterdir() if path.is_file() and not path.name.startswith("."))


def _listing(names: list[str]) -> str:
    return ", ".join(names) if names else "nothing"
