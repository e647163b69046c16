"""Finding a damaged Parquet file: the one reading check that the lake (naming a file in an error) and
``meters check`` (:mod:`meters.integrity`) share."""
from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq


def verify_parquet(path) -> str | None:
    """Why the Parquet file ``path`` cannot be read whole (footer, every page decompressed, page
    checksums where written), or None when it can."""
    try:
        pf = pq.ParquetFile(str(path), page_checksum_verification=True)
        for _ in pf.iter_batches(batch_size=1 << 20):
            pass
    except FileNotFoundError:
        raise
    except Exception as e:  # pyarrow raises OSError, ArrowInvalid, ArrowException … for damage
        return " ".join(f"{type(e).__name__}: {e}".split())[:300]
    return None


_PATH = re.compile(r"""['"]([^'"]+\.parquet)['"]""")


def damaged_file(files: list, error: BaseException) -> tuple[Path, str] | None:
    """The file of ``files`` whose damage made reading them raise ``error``, and what is wrong with it:
    the file the error names if it is one of them, else the first that fails :func:`verify_parquet`."""
    named = set(_PATH.findall(str(error)))
    ordered = [p for p in files if str(p) in named] + [p for p in files if str(p) not in named]
    for p in ordered:
        try:
            why = verify_parquet(p)
        except FileNotFoundError:
            continue
        if why:
            return p, why
    return None
