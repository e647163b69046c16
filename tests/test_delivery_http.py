"""The webhook client (delivery/http.py) against a raw HTTP/1.1 server on loopback: pipelined
requests answered in order whatever their framing, a server that closes after some answers, one that
never answers."""
from __future__ import annotations

import asyncio

import pytest

from delivery import http


class Server:
    """Answers each POST with its ``x-n`` header echoed in the body, framed in turn by
    Content-Length, chunked (with a trailer) and 204; ``close_after`` answers per connection, then
    it closes without saying so; ``silent``: never answers."""

    def __init__(self, close_after: int | None = None, silent: bool = False, http10: bool = False):
        self.close_after, self.silent, self.http10 = close_after, silent, http10
        self.connections = self.requests = 0

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook"

    async def handle(self, reader, writer):
        self.connections += 1
        answered = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:-2])
                await reader.readexactly(int(headers["content-length"]))
                self.requests += 1
                if self.silent:
                    continue
                n = headers["x-n"].encode()
                kind = int(n) % 3
                if self.http10:                      # one answer, then the connection closes
                    writer.write(b"HTTP/1.0 200 OK\r\n\r\n%s" % n)
                    await writer.drain()
                    break
                if kind == 0:
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(n), n))
                elif kind == 1:
                    writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                                 b"%x\r\n%s\r\n0\r\nx-trailer: 1\r\n\r\n" % (len(n), n))
                else:
                    writer.write(b"HTTP/1.1 204 No Content\r\nx-n: %s\r\n\r\n" % n)
                answered += 1
                if self.close_after is not None and answered >= self.close_after:
                    await writer.drain()
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


def _n(resp: http.Response) -> str:
    return resp.headers["x-n"] if resp.status == 204 else resp.body.decode()


async def _post_all(url: str, n: int, **kw) -> list[str]:
    client = http.Client(timeout_s=5.0, **kw)
    try:
        got = await asyncio.gather(*(client.post(url, b"{}", {"x-n": str(i)}) for i in range(n)))
    finally:
        await client.aclose()
    return [_n(r) for r in got]


def test_pipelined_answers_reach_their_requests():
    async def main():
        s = Server()
        url = await s.start()
        got = await _post_all(url, 300, connections=4)      # 75 in flight on each connection
        assert got == [str(i) for i in range(300)]
        assert s.connections == 4 and s.requests == 300
    asyncio.run(main())


def test_requests_left_unanswered_by_a_closing_server_are_sent_again():
    async def main():
        s = Server(close_after=20)                        # as servers limit requests per connection
        url = await s.start()
        got = await _post_all(url, 100, connections=4)
        assert got == [str(i) for i in range(100)]
        assert s.connections > 4                 # new connections for the requests left unanswered
    asyncio.run(main())


def test_an_http_1_0_server_gets_one_request_per_connection():
    async def main():
        s = Server(http10=True)
        url = await s.start()
        client = http.Client(timeout_s=5.0, connections=2)
        first = await client.post(url, b"{}", {"x-n": "0"})       # learns the server closes after an answer
        got = await asyncio.gather(*(client.post(url, b"{}", {"x-n": str(i)}) for i in range(1, 40)))
        await client.aclose()
        assert [r.body.decode() for r in (first, *got)] == [str(i) for i in range(40)]
        assert s.requests == 40                             # none sent twice: no pipelining on it
    asyncio.run(main())


def test_a_server_that_never_answers_times_out():
    async def main():
        s = Server(silent=True)
        url = await s.start()
        client = http.Client(timeout_s=0.5, connections=2)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        results = await asyncio.gather(*(client.post(url, b"{}", {"x-n": str(i)}) for i in range(10)),
                                       return_exceptions=True)
        await client.aclose()
        assert all(isinstance(r, (TimeoutError, http.HttpError)) for r in results), results
        assert any(isinstance(r, TimeoutError) for r in results)
        assert loop.time() - t0 < 3.0
    asyncio.run(main())


def test_a_refused_connection_is_an_http_error():
    async def main():
        s = Server()
        url = await s.start()
        s.server.close()
        await s.server.wait_closed()
        with pytest.raises(http.HttpError):
            await _post_all(url, 1)
    asyncio.run(main())
