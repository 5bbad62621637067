"""In-process timing of signed ingress POSTs (falcon.testing), for the code on sys.path.

Usage: PYTHONPATH=<checkout> python scripts/ingress_ab.py N -> prints JSON: CPU µs of this
process per request (time.process_time, so that other processes on a shared machine count
less) for routed (unique ids) and duplicate (one id again and again) messages on lmdb with
sync=False (the request's own work, not the fsync) and on durable lmdb (routed only, N/4).
For an A/B, run it alternately on two checkouts (e.g. ``git archive BASE | tar -x -C DIR``).
"""
import json
import sys
import tempfile
import time

import falcon.testing

from domains.channel import signing
from engine import open_store
from web.app import create_app
from web.settings import Settings

N = int(sys.argv[1])
SECRET = "bench-secret"
ROUTE = {"provider": "WHATSAPP", "transport": "BUSINESS_API", "accountId": "acc-1",
         "peerId": "peer-1"}


def bodies(prefix, n, same=False):
    stamp = str(int(time.time()))
    out = []
    for i in range(n):
        body = json.dumps({**ROUTE, "peerType": "USER",
                           "externalMessageId": f"{prefix}" if same else f"{prefix}-{i}",
                           "content": "hello from the benchmark",
                           "attachments": [{"kind": "image", "url": "https://x/y.png",
                                            "mimeType": None, "sizeBytes": 3}],
                           "metadata": {"raw": {"a": 1}},
                           "receivedAt": "2026-02-22T10:15:30.123Z"}).encode()
        out.append((body, {"Content-Type": "application/json",
                           "x-autobyteus-gateway-timestamp": stamp,
                           "x-autobyteus-gateway-signature": signing.sign(SECRET, stamp, body)}))
    return out


def run(sync, same, n):
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store("lmdb", data_dir=tmp, sync=sync)
        app = create_app(store, Settings(provider="lmdb", data_dir=tmp,
                                         gateway_shared_secret=SECRET))
        client = falcon.testing.TestClient(app)
        put = client.simulate_put("/rest/api/channel-bindings", json={
            **ROUTE, "targetType": "AGENT", "agentId": "agent-1"})
        assert put.status_code == 201, put.text
        reqs = bodies("m", n, same)
        for body, headers in reqs[:50]:  # warm-up
            client.simulate_post("/rest/api/channel-ingress/v1/messages", body=body,
                                 headers=headers)
        reqs = bodies("run", n, same)
        t0 = time.process_time()
        for body, headers in reqs:
            r = client.simulate_post("/rest/api/channel-ingress/v1/messages", body=body,
                                     headers=headers)
            assert r.status_code == 202, r.text
        elapsed = time.process_time() - t0
        store.close()
        return round(elapsed / n * 1e6, 1)


print(json.dumps({"routed_nosync_us": run(False, False, N),
                  "duplicate_nosync_us": run(False, True, N),
                  "routed_durable_us": run(True, False, N // 4)}))
