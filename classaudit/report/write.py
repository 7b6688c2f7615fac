"""Write: the only code of the report stage that touches the disk. Every file is written whole or not at all.

All files are first written to temporary names in the output folder (fsynced), then each is renamed into place;
if anything fails before the renames, the temporaries are removed and a folder this call created is removed
again, so an error leaves nothing half-written behind. Files an earlier report left that this one does not
write (a table that no longer applies) are removed last, so the folder holds one report, not a mix of two.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from classaudit.atomic import staged, temporary_name
from classaudit.errors import UsageError

NOT_A_FOLDER = "{path}: the report's output folder is a file; give a folder path with --out"
CANNOT_WRITE = "{path}: cannot write the report there ({problem}); choose another --out folder or fix its permissions"


def write(files: Mapping[str, str], out: str | Path, *, replaces: Iterable[str] = ()) -> Path:
    """Write {file name: text} into the folder `out` (created with its parents); return the folder.

    `replaces` names files a report may hold: those of them not in `files` are removed after the writes.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(NOT_A_FOLDER.format(path=out))
    created = not out.exists()
    temporaries: list[tuple[Path, Path]] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            final = out / name
            with staged(final) as f:
                f.write(text.encode("utf-8"))
            temporaries.append((temporary_name(final), final))
    except BaseException as e:
        for tmp, _ in temporaries:
            tmp.unlink(missing_ok=True)
        if created:
            _remove_empty(out)
        if isinstance(e, OSError):
            raise UsageError(CANNOT_WRITE.format(path=out, problem=e.strerror or e)) from None
        raise
    for tmp, final in temporaries:
        os.replace(tmp, final)
    for name in sorted(set(replaces) - set(files)):
        (out / name).unlink(missing_ok=True)
    return out


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
