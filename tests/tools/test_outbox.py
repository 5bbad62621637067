"""outbox: the channel outbox's list and retry on a stopped server's store, on every backend."""

from __future__ import annotations

import json

from domains.channel.outbox import OutboxWorker
from tests.domains.channel_support import (
    FloatClock,
    GatewayStub,
    bind_agent,
    keyword_service,
    routed_turn,
)
from tests.tools.helpers import flags, tool


def test_list_and_put_back_a_dead_letter(make_store, backend, capsys):
    loc = make_store.location(backend)
    store = make_store.open(backend, loc)
    svc = keyword_service(store, callback_configured=True)
    bind_agent(svc)
    for i in range(3):
        routed_turn(svc, f"m-{i}", f"t-{i}")
        assert svc.publish_reply(agent_id="agent-1", turn_id=f"t-{i}",
                                 reply_text=f"reply {i}").published
    gateway = GatewayStub(plan=[404, 202])
    try:
        OutboxWorker(svc, base_url=gateway.base_url, clock=FloatClock(),
                     batch_size=2).run_once()
    finally:
        gateway.close()
    store.close()
    capsys.readouterr()

    assert tool("outbox", "list", *flags(backend, loc)) == 0
    out, err = capsys.readouterr()
    entries = [json.loads(line) for line in out.splitlines()]
    assert [(e["id"], e["status"]) for e in entries] == \
        [("3", "PENDING"), ("2", "SENT"), ("1", "DEAD_LETTER")]
    assert entries[2]["lastError"] == '404 {"code":"HTTP_404"}'
    assert entries[2]["attempts"] == 1 and entries[0]["nextAttemptAt"] is not None
    assert "1 PENDING" in err and "1 DEAD_LETTER" in err and "1 SENT" in err

    assert tool("outbox", "list", *flags(backend, loc), "--status", "dead_letter") == 0
    assert [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()] == ["1"]
    assert tool("outbox", "list", *flags(backend, loc), "--limit", "2") == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2 and "--cursor " in err
    cursor = err.split("--cursor ")[1].split()[0]
    assert tool("outbox", "list", *flags(backend, loc), "--limit", "2", "--cursor", cursor) == 0
    assert [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()] == ["1"]
    assert tool("outbox", "list", *flags(backend, loc), "--status", "LOST") == 2

    assert tool("outbox", "retry", "2", *flags(backend, loc)) == 1  # SENT: not dead
    assert "SENT" in capsys.readouterr().err
    assert tool("outbox", "retry", "42", *flags(backend, loc)) == 2
    capsys.readouterr()
    assert tool("outbox", "retry", "1", *flags(backend, loc)) == 0
    back = json.loads(capsys.readouterr().out)
    assert (back["id"], back["status"], back["attempts"]) == ("1", "PENDING", 0)

    store = make_store.open(backend, loc)
    svc = keyword_service(store)
    assert svc.outbox_entry("1").status == "PENDING"
    assert svc.delivery_event("external-reply:agent-1:t-0").status == "PENDING"
    store.close()
