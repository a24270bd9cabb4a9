"""NLTK corpora the serving account is allowed to read.

The pinned NLTK (3.10) reads a corpus only when every entry in it belongs to root or to the account
reading it, and has no group or world write bit (its guard against planted data files). Blubber's NLTK
builder runs at build time as the image's `lives.as` account (`somebody`) while the server runs as
`runs.as` (`runuser`), so NLTK would refuse every corpus the build downloaded, and no revscoring model
that reads stopwords or WordNet could load.

So, before any model loads, each folder on NLTK's data path that NLTK would refuse only because its
entries belong to the account that owns this server's own code (the image's `lives.as`) is copied into a
new private folder (mode 0700, under the temporary directory: `/tmp`, the one writable place of a
read-only container), owned by the serving account, and the copy takes the folder's place on the path and
in NLTK_DATA. Trusting the data of the account whose code already runs here adds no trust. Anything else
NLTK refuses stays refused: entries of any other account, and entries with a group or world write bit.
Folders of root's or of the serving account are read in place, as before.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

logger = logging.getLogger("revscoring_server.nltk_corpora")


def refused_only_for_the_code_owner(folder: Path, code_owner: int) -> bool:
    """True when NLTK would refuse `folder` and every entry it would refuse belongs to `code_owner`, with no
    group or world write bit anywhere; False when NLTK reads it as it is, or an entry stays untrusted."""
    trusted = {0, os.geteuid()}
    refused = False
    for current, dirs, files in os.walk(folder):
        for name in dirs + files:
            info = Path(current, name).lstat()
            if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return False
            if info.st_uid not in trusted:
                if info.st_uid != code_owner:
                    return False
                refused = True
    return refused


def private_copy(folder: Path, parent: str | None = None) -> Path:
    """`folder` copied into a new folder of this account's (0700; directories 0700, files 0600)."""
    copy = Path(tempfile.mkdtemp(prefix="nltk_data-", dir=parent))
    shutil.copytree(folder, copy, dirs_exist_ok=True, copy_function=shutil.copyfile)
    os.chmod(copy, 0o700)  # copytree gave it the source folder's mode
    for current, dirs, files in os.walk(copy):
        for name in dirs:
            os.chmod(Path(current, name), 0o700)
        for name in files:
            os.chmod(Path(current, name), 0o600)
    owner = os.getpid()
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(copy, ignore_errors=True))
    return copy


def use_readable_corpora(environ: dict[str, str] | os._Environ = os.environ, parent: str | None = None,
                         code_owner: int | None = None) -> dict[str, str]:
    """Replaces every folder on NLTK's data path that NLTK refuses only because `code_owner` (default: the
    owner of this module's file) owns entries of it with a private copy (see the module docstring). Returns
    {original folder: its copy}; empty when every folder is read as it is."""
    import nltk.data

    if code_owner is None:
        code_owner = Path(__file__).stat().st_uid
    replaced: dict[str, str] = {}
    for index, entry in enumerate(list(nltk.data.path)):
        folder = Path(str(entry))
        if not folder.is_dir() or not refused_only_for_the_code_owner(folder, code_owner):
            continue
        copy = private_copy(folder, parent)
        nltk.data.path[index] = str(copy)
        replaced[str(entry)] = str(copy)
        logger.info(f"NLTK data {folder} belongs to another account (uid {code_owner}, which owns this "
                    f"server's code); reading a private copy in {copy}")
    if replaced and environ.get("NLTK_DATA"):
        environ["NLTK_DATA"] = os.pathsep.join(
            replaced.get(part, part) for part in environ["NLTK_DATA"].split(os.pathsep))
    return replaced
