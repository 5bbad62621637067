"""Wiring: every domain's service over one store, and what the server runs beside them.

The web layer and the tools call ``build_services``; no domain reads the environment itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from domains.common import Clock, utc_now
from engine import Store

if TYPE_CHECKING:  # the services import their repositories and the engine's index layer
    from domains.agent_definitions.service import AgentDefinitionService
    from domains.agent_teams.service import AgentTeamService
    from domains.artifacts.service import ArtifactService
    from domains.channel.service import ChannelService
    from domains.mcp_servers.service import McpServerService
    from domains.prompts.service import PromptService
    from domains.token_usage.service import TokenUsageService


@attrs.define
class Services:
    store: Store
    prompts: PromptService
    agent_definitions: AgentDefinitionService
    agent_teams: AgentTeamService
    mcp_servers: McpServerService
    token_usage: TokenUsageService
    artifacts: ArtifactService
    #: The external-channel services (domains.md section 7), when built.
    channel: ChannelService | None = None
    #: TTL spaces whose expired keys the server's sweeper purges.
    ttl_spaces: list[Any] = attrs.field(factory=list)
    #: Factories of background workers (each with start() and stop()), given the settings dict.
    worker_factories: list[Callable[[], Any]] = attrs.field(factory=list)

    def background_workers(self, sweep_interval_s: float) -> list[Any]:
        from engine.indexes import TtlSweeper

        workers: list[Any] = []
        if self.ttl_spaces:
            workers.append(TtlSweeper(self.store, self.ttl_spaces, interval=sweep_interval_s))
        workers.extend(factory() for factory in self.worker_factories)
        return workers


def build_services(
    store: Store, *, settings: Mapping[str, Any] | None = None, clock: Clock | None = None
) -> Services:
    from domains.agent_definitions.service import AgentDefinitionService
    from domains.agent_teams.service import AgentTeamService
    from domains.artifacts.service import ArtifactService
    from domains.mcp_servers.service import McpServerService
    from domains.prompts.service import PromptService
    from domains.token_usage.service import TokenUsageService

    clock = clock or utc_now
    options = dict(settings or {})
    channel = _build_channel(store, options, clock)
    services = Services(
        store=store,
        prompts=PromptService(store, clock=clock),
        agent_definitions=AgentDefinitionService(store, clock=clock),
        agent_teams=AgentTeamService(store, clock=clock),
        mcp_servers=McpServerService(store, clock=clock),
        token_usage=TokenUsageService(store, clock=clock),
        artifacts=ArtifactService(store, clock=clock),
        channel=channel,
    )
    services.ttl_spaces.extend(channel_ttl_spaces())
    if options.get("callback_base_url"):
        services.worker_factories.append(lambda: _outbox_worker(channel, options))
    return services


def _build_channel(store: Store, options: Mapping[str, Any], clock: Clock) -> ChannelService:
    from domains.channel.service import ChannelService

    return ChannelService(
        store,
        clock=clock,
        ingress_idempotency_ttl_s=options.get("ingress_idempotency_ttl_s", 3600),
        callback_idempotency_ttl_s=options.get("callback_idempotency_ttl_s", 3600),
        callback_configured=bool(
            options.get("callback_configured", options.get("callback_base_url"))
        ),
        ingress_routed_disposition=options.get("ingress_routed_disposition", "ROUTED"),
    )


def channel_ttl_spaces() -> list[Any]:
    from domains import channel

    return channel.ttl_spaces()


def _outbox_worker(channel: Any, options: Mapping[str, Any]) -> Any:
    """The channel outbox worker, woken whenever a reply is queued."""
    from domains.channel.outbox import OutboxWorker

    worker = OutboxWorker(
        channel,
        base_url=options["callback_base_url"],
        shared_secret=options.get("callback_shared_secret"),
        timeout_ms=options.get("callback_timeout_ms", 5000),
        poll_interval=options.get("outbox_poll_interval_s", 1.0),
    )
    channel.outbox_listeners.append(worker.wake)
    return worker


def all_collections() -> list[Any]:
    """Every index-layer collection of every domain (for the consistency check and tools)."""
    from domains import (
        agent_definitions,
        agent_teams,
        artifacts,
        channel,
        mcp_servers,
        prompts,
        token_usage,
    )

    found: list[Any] = []
    for package in (prompts, agent_definitions, agent_teams, mcp_servers, token_usage, artifacts,
                    channel):
        found.extend(package.collections())
    return found
