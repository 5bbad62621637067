"""What the channel's resource modules share: the base path and the service."""

from __future__ import annotations

from domains.channel.service import ChannelService
from web.context import AppContext

BASE = "/rest/api"


def channel_service(ctx: AppContext) -> ChannelService:
    """The channel service of the app (built by the composition root with every app)."""
    service = ctx.services.channel
    if service is None:
        raise RuntimeError("the app was built without the external-channel service")
    return service
