"""``READERS``: the file formats ``meters import`` reads, by name (each reader module declares its
:class:`~meters.iotools.Reader`; a new format is a module and a line here)."""
from __future__ import annotations

from . import Reader, csv, greenbutton, nem12

READERS: dict[str, Reader] = {r.name: r for r in (nem12.READER, greenbutton.READER, csv.READER)}
