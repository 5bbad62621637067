"""The channel bodies' JSON Schemas say exactly what the service accepts, rules between fields
included (the shapes' RELATIONS): for each body below, the schema's verdict (a real JSON Schema
validator) is the service's. The schema-driven fuzz test (tests/security/test_fuzz_openapi.py,
strict) checks the same on generated bodies; these are the edge cases, named."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest

from domains.channel.commands import BindTurn, DeliveryReport, InboundMessage, PutBinding
from domains.channel.service import ChannelService
from domains.errors import ValidationError
from domains.shapes import json_schema, parse
from engine import Store
from tests.domains.channel_support import ENVELOPE, ROUTE

DISCORD = {**ROUTE, "provider": "discord", "peerId": "channel:42"}
TELEGRAM = {**ROUTE, "provider": "Telegram"}


def accepted(svc: ChannelService, shape: type, body: dict[str, Any]) -> bool:
    try:
        command = parse(shape, body)
        if shape is PutBinding:
            svc.upsert_binding(command)
        elif shape is BindTurn:
            svc.bind_turn(command)
        elif shape is DeliveryReport:
            svc.record_delivery_event(command)
        else:
            ChannelService.envelope(command)
    except ValidationError:
        return False
    return True


def described(shape: type, body: dict[str, Any]) -> bool:
    return bool(jsonschema_rs.Draft202012Validator(json_schema(shape)).is_valid(body))


BODIES: list[tuple[type, dict[str, Any], bool]] = [
    # provider x transport pairs (models.CAPABILITIES), case-insensitive
    (InboundMessage, ENVELOPE, True),
    (InboundMessage, {**ENVELOPE, "provider": " wechat ", "transport": "personal_session"}, True),
    (InboundMessage, {**ENVELOPE, "provider": "WECHAT"}, False),
    (InboundMessage, {**ENVELOPE, "provider": "TELEGRAM", "transport": "PERSONAL_SESSION"},
     False),
    # Discord ids: user:/channel: peers; a thread of digits, only under a channel: peer
    (InboundMessage, {**ENVELOPE, **DISCORD}, True),
    (InboundMessage, {**ENVELOPE, **DISCORD, "peerId": "user:7", "threadId": " "}, True),
    (InboundMessage, {**ENVELOPE, **DISCORD, "threadId": "77"}, True),
    (InboundMessage, {**ENVELOPE, **DISCORD, "peerId": "user:7", "threadId": "77"}, False),
    (InboundMessage, {**ENVELOPE, **DISCORD, "threadId": "t1"}, False),
    (InboundMessage, {**ENVELOPE, **DISCORD, "peerId": "guild:1"}, False),
    (InboundMessage, {**ENVELOPE, **DISCORD, "peerId": "user:1\n"}, False),
    (InboundMessage, {**ENVELOPE, **DISCORD, "threadId": "77\n"}, False),
    # which target fields go with targetType; what each pair can target
    (PutBinding, {**ROUTE, "targetType": "agent", "agentId": "a", "teamId": None}, True),
    (PutBinding, {**ROUTE, "targetType": "AGENT", "agentId": "a", "targetMemberName": ""}, True),
    (PutBinding, {**ROUTE, "targetType": "AGENT", "agentId": " "}, False),
    (PutBinding, {**ROUTE, "targetType": "AGENT", "agentId": "a", "teamId": "t"}, False),
    (PutBinding, {**ROUTE, "targetType": "AGENT", "agentId": "a", "targetMemberName": "m"},
     False),
    (PutBinding, {**ROUTE, "targetType": "TEAM", "teamId": "t", "targetMemberName": "m"}, True),
    (PutBinding, {**ROUTE, "targetType": "TEAM", "teamId": "t", "agentId": "a"}, False),
    (PutBinding, {**ROUTE, "targetType": "TEAM", "agentId": "a"}, False),
    (PutBinding, {**TELEGRAM, "targetType": "AGENT", "agentId": "a"}, True),
    (PutBinding, {**TELEGRAM, "targetType": "TEAM", "teamId": "t"}, False),
    (PutBinding, {**DISCORD, "targetType": "TEAM", "teamId": "t", "threadId": "9"}, True),
    (PutBinding, {**DISCORD, "peerId": "42", "targetType": "TEAM", "teamId": "t"}, False),
    # a turn binding names an agentId or a teamId
    (BindTurn, {**ROUTE, "externalMessageId": "m", "turnId": "t", "agentId": "a"}, True),
    (BindTurn, {**ROUTE, "externalMessageId": "m", "turnId": "t", "teamId": "t"}, True),
    (BindTurn, {**ROUTE, "externalMessageId": "m", "turnId": "t", "agentId": ""}, False),
    (BindTurn, {**ROUTE, "externalMessageId": "m", "turnId": "t"}, False),
    (BindTurn, {**TELEGRAM, "transport": "personal_session", "externalMessageId": "m",
                "turnId": "t", "agentId": "a"}, False),
    # a delivery event's key: metadata.callbackIdempotencyKey, else a correlationMessageId
    (DeliveryReport, {**ROUTE, "status": "SENT", "correlationMessageId": "c"}, True),
    (DeliveryReport, {**ROUTE, "status": "SENT", "metadata": {"callbackIdempotencyKey": "k"}},
     True),
    (DeliveryReport, {**ROUTE, "status": "SENT", "correlationMessageId": " "}, False),
    (DeliveryReport, {**ROUTE, "status": "SENT", "metadata": {"other": 1}}, False),
    (DeliveryReport, {**ROUTE, "status": "SENT", "metadata": None}, False),
    (DeliveryReport, {**DISCORD, "peerId": "x", "status": "SENT", "correlationMessageId": "c"},
     False),
]


@pytest.mark.parametrize("shape, body, expected", BODIES)
def test_the_schema_says_what_the_service_accepts(store: Store, shape: type,
                                                  body: dict[str, Any], expected: bool) -> None:
    svc = ChannelService(store)
    assert accepted(svc, shape, body) is expected
    assert described(shape, body) is expected
