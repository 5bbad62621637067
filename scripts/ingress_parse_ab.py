"""Micro-timing of the ingress body's checking alone: JSON document -> the envelope the service
routes (before: codec.parse_envelope + ChannelService.envelope; after: parse(InboundMessage) +
ChannelService.envelope). Prints CPU µs per body (best of 5 runs of N).
Usage: PYTHONPATH=<checkout> python scripts/ingress_parse_ab.py 20000, alternately on two."""
import json
import sys
import time

from domains.channel.service import ChannelService

N = int(sys.argv[1])
doc = {"provider": "WHATSAPP", "transport": "BUSINESS_API", "accountId": "acc-1",
       "peerId": "peer-1", "peerType": "USER", "externalMessageId": "m-1",
       "content": "hello from the benchmark", "routingKey": "x",
       "attachments": [{"kind": "image", "url": "https://x/y.png", "mimeType": None,
                        "sizeBytes": 3}],
       "metadata": {"raw": {"a": 1}}, "receivedAt": "2026-02-22T10:15:30.123Z"}
try:
    from domains.channel.commands import InboundMessage
    from domains.shapes import parse

    def one():
        return ChannelService.envelope(parse(InboundMessage, doc))
    which = "after"
except ImportError:
    from domains.channel import codec
    svc = ChannelService.__new__(ChannelService)

    def one():
        return svc.envelope(**codec.parse_envelope(doc))
    which = "before"
one()
best = min(
    (lambda t0: (lambda: [one() for _ in range(N)])() and time.process_time() - t0)(
        time.process_time()) for _ in range(5))
print(json.dumps({which + "_parse_us": round(best / N * 1e6, 2)}))
