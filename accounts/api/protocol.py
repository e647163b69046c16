"""uvicorn's HTTP/1.1 protocol (httptools) with a response's head and body leaving in one write.

uvicorn writes the head of a response when the application starts it and the body when it sends it:
two ``send`` system calls and two TCP segments for every small JSON answer, the first of which wakes
the client for a head it cannot use yet. Here the transport holds a head (bytes ending in the blank
line) until the next write, the body, and writes both at once; a head with no body right behind it
(``HEAD``, 204, a streamed body) leaves on the event loop's next turn. Nothing else changes: the same
bytes, in the same order.
"""
from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class OneWrite:
    """A transport whose response heads wait for their body (see the module docstring)."""

    __slots__ = ("transport", "loop", "head")

    def __init__(self, transport, loop):
        self.transport, self.loop, self.head = transport, loop, None

    def write(self, data) -> None:
        head = self.head
        if head is not None:
            self.head = None
            self.transport.write(head + data)
        elif data.endswith(b"\r\n\r\n"):
            self.head = data
            self.loop.call_soon(self.flush)
        else:
            self.transport.write(data)

    def flush(self) -> None:
        head, self.head = self.head, None
        if head is not None:
            self.transport.write(head)

    def writelines(self, data) -> None:
        self.flush()
        self.transport.writelines(data)

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + len(self.head or b"")

    def __getattr__(self, name):
        return getattr(self.transport, name)


class OneWriteHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol on a :class:`OneWrite` transport (``uvicorn.Config(http=…)``)."""

    def connection_made(self, transport) -> None:
        super().connection_made(OneWrite(transport, self.loop))
