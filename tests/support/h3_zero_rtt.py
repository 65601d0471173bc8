"""Tries 0-RTT against an HTTP/3 server with aioquic (PyPI): one GET to learn a session ticket,
then a second connection resuming it that sends its GET as early data, even when the ticket
does not allow early data (as a hostile client would: the server must refuse it, and the
request then goes again after the handshake).

Usage: h3_zero_rtt.py URL
Prints one JSON object: {"ticket": bool, "max_early_data": int | null, "resumed": bool,
"early_data_accepted": bool, "status": int}; the status is the second GET's.
"""
import asyncio
import json
import ssl
import sys
from urllib.parse import urlparse

from aioquic.asyncio.client import connect
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration

from h3_request import Client


async def main():
    url = urlparse(sys.argv[1])

    def config(ticket=None):
        c = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
        c.verify_mode = ssl.CERT_NONE
        c.session_ticket = ticket
        return c

    tickets = []
    async with connect(url.hostname, url.port, configuration=config(),
                       create_protocol=Client, session_ticket_handler=tickets.append) as first:
        await first.request("GET", url, [], b"")
        # A server that issues tickets has sent one with its answer; wait for it (2 s at most:
        # a server may issue none, and then there is no 0-RTT to try).
        for _ in range(40):
            if tickets:
                break
            await asyncio.sleep(0.05)
    out = {"ticket": bool(tickets), "max_early_data": None, "resumed": False,
           "early_data_accepted": False, "status": None}
    if tickets:
        ticket = tickets[-1]
        out["max_early_data"] = ticket.max_early_data_size
        ticket.max_early_data_size = 0xFFFFFFFF
        # Not waiting for the handshake: the request goes as 0-RTT if the ticket allows it.
        async with connect(url.hostname, url.port, configuration=config(ticket),
                           create_protocol=Client, wait_connected=False) as second:
            await second.request("GET", url, [], b"")
            out["resumed"] = bool(second._quic.tls.session_resumed)
            out["early_data_accepted"] = bool(second._quic.tls.early_data_accepted)
            out["status"] = second.headers[0]
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
