"""The alert dispatcher as the account service starts it (``meters serve --notify``): an interface.

The account service never imports the delivery stage (stages are independent); it asks this module
for a :class:`Notifier`, which the delivery stage implements and declares under the Python entry
point group ``meters.notifiers`` (``pyproject.toml``), and runs it as a task of the server's event
loop: started with the server, stopped (deliveries in flight finished and recorded) when it shuts
down.
"""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

import sqlalchemy as sa

from .errors import MetersError

GROUP = "meters.notifiers"


@runtime_checkable
class Notifier(Protocol):
    async def run(self) -> dict:
        """Deliver until :meth:`stop`; returns the totals (``sent``, ``failed``, ``dead``)."""

    def stop(self) -> None:
        """Finish the deliveries in flight, record them, and return from :meth:`run`."""


def open_notifier(engine: sa.Engine, *, broker_url: str | None = None, broker_dir: str | None = None,
                  concurrency: int = 512, log=None) -> Notifier:
    """A dispatcher of the store ``engine``'s outbox (``broker_url``/``broker_dir``: the MQTT broker,
    as ``meters notify`` takes them); made in the event loop that will run it."""
    eps = {ep.name: ep for ep in entry_points(group=GROUP)}
    if not eps:
        raise MetersError(f"no alert dispatcher installed (entry point group {GROUP!r}); reinstall meters")
    return eps[sorted(eps)[0]].load()(engine, broker_url=broker_url, broker_dir=broker_dir,
                                      concurrency=concurrency, log=log)
