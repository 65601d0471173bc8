"""One HTTP/3 request with aioquic (PyPI), an HTTP/3 client not written here.

Usage: h3_request.py URL METHOD [HEADER:VALUE ...] < BODY
Sends the request over QUIC (ALPN h3, the edge's self-signed certificate accepted) with the
body from standard input, and prints one JSON object:
{"status": 201, "headers": {...}, "body": "...", "interim": [104, ...]}.
"""
import asyncio
import json
import ssl
import sys
from urllib.parse import urlparse

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic)
        self.interim = []
        self.headers = None
        self.body = bytearray()
        self.done = asyncio.get_event_loop().create_future()

    def quic_event_received(self, event):
        for ev in self.http.handle_event(event):
            if isinstance(ev, HeadersReceived):
                fields = {k.decode(): v.decode() for k, v in ev.headers}
                status = int(fields.pop(":status"))
                if 100 <= status < 200:
                    self.interim.append(status)
                else:
                    self.headers = (status, fields)
            elif isinstance(ev, DataReceived):
                self.body.extend(ev.data)
            if getattr(ev, "stream_ended", False) and not self.done.done():
                self.done.set_result(None)

    async def request(self, method, url, headers, body):
        stream = self._quic.get_next_available_stream_id()
        self.http.send_headers(
            stream,
            [
                (b":method", method.encode()),
                (b":scheme", b"https"),
                (b":authority", url.netloc.encode()),
                (b":path", (url.path + ("?" + url.query if url.query else "")).encode()),
            ]
            + [(k.lower().encode(), v.encode()) for k, v in headers],
            end_stream=not body,
        )
        if body:
            # aioquic keeps the body and sends it as the edge's flow control allows.
            self.http.send_data(stream, body, end_stream=True)
        self.transmit()
        await asyncio.wait_for(self.done, 60)


async def main():
    url = urlparse(sys.argv[1])
    method = sys.argv[2]
    headers = [tuple(h.split(":", 1)) for h in sys.argv[3:]]
    body = sys.stdin.buffer.read()
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.verify_mode = ssl.CERT_NONE
    async with connect(url.hostname, url.port, configuration=config, create_protocol=Client) as client:
        await client.request(method, url, headers, body)
        status, fields = client.headers
        print(json.dumps({
            "status": status,
            "headers": fields,
            "body": client.body.decode(errors="replace"),
            "interim": client.interim,
        }))


if __name__ == "__main__":
    asyncio.run(main())
