"""The latency proxy of bench_concurrency's shaped link (a process of its own, started by
bench_concurrency.Link; light imports so that it starts at once on a loaded machine).

    python _latency_proxy.py '[[listen_host, port], [upstream_host, port], one_way_delay_s, rate_or_null]'

Every chunk is forwarded ``one_way_delay_s`` after it arrived, in each direction; a new
connection waits one round trip first (the TCP handshake). With a rate (bytes/s, used only
where tc is unavailable) one token bucket paces the server -> client direction of all
connections.
"""
from __future__ import annotations

import asyncio
import json
import sys
from typing import Optional


class _Bucket:
    """One link's worth of bandwidth (bytes per second) shared by every connection of the proxy:
    the time each chunk's last byte would leave a link of that rate."""

    def __init__(self, rate: float):
        self.rate, self.free = rate, 0.0

    def departs(self, now: float, n: int) -> float:
        self.free = max(self.free, now) + n / self.rate
        return self.free


def _write(writer, data) -> None:
    if not writer.is_closing():
        writer.write(data)


def _eof(writer) -> None:
    if not writer.is_closing() and writer.can_write_eof():
        writer.write_eof()


async def _pump(reader, writer, delay: float, bucket: Optional[_Bucket]) -> float:
    """Forward reader -> writer, each chunk written ``delay`` seconds after it arrived (a delay
    line: chunks in flight overlap, as on a long link; callbacks, no task per chunk). Returns
    when the last write is due."""
    loop = asyncio.get_running_loop()
    last = 0.0
    try:
        while True:
            data = await reader.read(1 << 18)
            if not data:
                break
            due = loop.time() + delay
            if bucket is not None:
                due = max(due, bucket.departs(loop.time(), len(data)) + delay)
            last = max(due, last + 1e-7)  # strictly increasing: the timer heap keeps the order
            loop.call_at(last, _write, writer, data)
    except (ConnectionError, OSError):
        pass
    last = max(loop.time() + delay, last + 1e-7)
    loop.call_at(last, _eof, writer)
    return last


def _proxy_main(listen: tuple, upstream: tuple, delay: float, rate: Optional[float]) -> None:
    async def serve():
        bucket = _Bucket(rate) if rate else None
        loop = asyncio.get_running_loop()

        async def handle(cr, cw):
            try:
                ur, uw = await asyncio.open_connection(*upstream)
            except OSError:
                cw.close()
                return
            await asyncio.sleep(2 * delay)  # the TCP handshake's round trip
            try:
                ends = await asyncio.gather(_pump(cr, uw, delay, None), _pump(ur, cw, delay, bucket))
                await asyncio.sleep(max(ends) - loop.time() + 0.01)
            finally:
                for w in (uw, cw):
                    w.close()

        server = await asyncio.start_server(handle, *listen, limit=1 << 20, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    front, upstream, delay, rate = json.loads(sys.argv[1])
    _proxy_main(tuple(front), tuple(upstream), delay, rate)
