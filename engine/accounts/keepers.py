"""One TokenKeeper per configured account, built from the settings.

``build_keepers(settings, clock)`` returns ``{"leader": keeper, "<follower name>": keeper,
...}`` (enabled followers only), each with its own auth session bound to the account's
``source_ip`` and pointed at ``settings.dhan`` (REST URL, auth URL, timeout). Nothing is sent
until each keeper's ``start()``.
"""

from __future__ import annotations

from engine.accounts.auth_api import DhanAuthApi
from engine.accounts.tokens import TokenKeeper
from engine.clock import Clock
from engine.config import AccountSettings, FollowerSettings, Settings

__all__ = ["build_keepers", "keeper_for"]


def keeper_for(
    name: str, account: AccountSettings | FollowerSettings, settings: Settings, clock: Clock
) -> TokenKeeper:
    auth = DhanAuthApi(
        account.client_id,
        auth_base_url=settings.dhan.auth_base_url,
        api_base_url=settings.dhan.rest_url,
        timeout_s=settings.dhan.timeout_s,
        source_ip=account.source_ip,
    )
    return TokenKeeper(
        name,
        account.client_id,
        auth=auth,
        clock=clock,
        access_token=account.access_token,
        pin=account.pin,
        totp_secret=account.totp_secret,
        is_leader=name == "leader",
    )


def build_keepers(settings: Settings, clock: Clock) -> dict[str, TokenKeeper]:
    keepers = {"leader": keeper_for("leader", settings.leader, settings, clock)}
    for follower in settings.followers:
        if follower.enabled:
            keepers[follower.name] = keeper_for(follower.name, follower, settings, clock)
    return keepers
