"""Each account's access token and static IP while the engine runs.

One :class:`~engine.accounts.tokens.TokenKeeper` per account (pasted token, or minted from
PIN + TOTP, renewed before it ends) is started before the brokers and sockets open, which start
with its token. Every new token (renewed, minted, replaced with ``copytrade token set``) goes
into the account's broker at once and into its order socket's next login. Dhan refusing a token
(DH-901 on any call, a refused socket login) is told to the keeper, which mints a new one when
it can; when it cannot, the account is frozen (the leader: the whole engine) until a working
token is back. An order refused for its source address freezes that follower with an alert
naming the address. Every token event is an alert; no token, PIN or TOTP secret is in any.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from pydantic import SecretStr

from engine.accounts.keepers import build_keepers
from engine.accounts.tokens import ReplaceOutcome, TokenEvent, TokenKeeper
from engine.clock import Clock
from engine.config import Settings
from engine.dhan.errors import BrokerResult
from engine.domain import FreezeCause, Severity
from engine.live.accounts import (
    LEADER,
    Accounts,
    Broker,
    FollowerRuntime,
    GuardedBroker,
    TokenHolder,
)
from engine.live.arming import ENGINE_SCOPE
from engine.live.notifier import Notifier
from engine.live.tasks import TaskSet
from engine.secrets import redact

log = logging.getLogger(__name__)

Freeze = Callable[[str, FreezeCause, str], Awaitable[None]]
"""(scope: "" the engine or a follower's name, cause, the reason in plain words)."""


def freeze_scope(account: str) -> str:
    return ENGINE_SCOPE if account == LEADER else account


class AccountTokens:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        accounts: Accounts,
        notifier: Notifier,
        tasks: TaskSet,
        freeze: Freeze,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._accounts = accounts
        self._notifier = notifier
        self._tasks = tasks
        self._freeze = freeze
        self._stop = asyncio.Event()

    @property
    def keepers(self) -> dict[str, TokenKeeper]:
        return self._accounts.keepers

    # --- start and stop ----------------------------------------------------------------------

    async def start(self) -> None:
        """Build and start every account's keeper (mint, or learn the pasted token's expiry).

        An account left without a working token is frozen; its keeper keeps trying."""
        self._accounts.keepers.update(build_keepers(self._settings, self._clock))
        for name, keeper in self.keepers.items():
            keeper.add_event_listener(self._on_event)
            keeper.add_token_listener(self._token_listener(name))
        names = list(self.keepers)
        results = await asyncio.gather(
            *(self.keepers[n].start() for n in names), return_exceptions=True
        )
        for name, result in zip(names, results, strict=True):
            keeper = self.keepers[name]
            if isinstance(result, BaseException):
                log.error("%s: token keeper could not start: %s", name, redact(str(result)))
                reason = f"{name}: no access token could be had ({redact(str(result))})"
            elif not keeper.has_token:
                reason = (
                    f"{name}: no access token: minting one from PIN+TOTP failed; "
                    "trying again every 30 s"
                )
            else:
                continue
            self._notifier.alert("TOKEN_MISSING", Severity.CRITICAL, reason, self._follower(name))
            await self._freeze(freeze_scope(name), FreezeCause.TOKEN_REFUSED, reason)

    def run(self) -> None:
        """Every keeper renews (or mints) before expiry, as an engine task."""
        self._stop.clear()
        for name, keeper in self.keepers.items():
            self._tasks.spawn(keeper.run(self._stop), f"token-{name}")

    def close(self) -> None:
        self._stop.set()
        for keeper in self.keepers.values():
            keeper.close()

    # --- what the rest of the engine calls ---------------------------------------------------

    def guard(self, account: str, broker: Broker) -> Broker:
        """The account's broker, its token and IP refusals reported here."""
        return GuardedBroker(account, broker, self.token_refused, self.ip_refused)

    async def token_refused(self, account: str, token_used: str | None) -> bool:
        """Dhan refused the token a call of ``account`` went with (DH-901). True when another
        working token is in place now (the call may be sent again with it); False: the keeper
        could not get one and said so (TOKEN_REFUSED, which freezes the account)."""
        keeper = self.keepers.get(account)
        if keeper is None:
            reason = f"Dhan refused {account}'s token (invalid or expired)"
            await self._freeze(freeze_scope(account), FreezeCause.TOKEN_REFUSED, reason)
            return False
        return await keeper.on_refused(token_used)

    def stream_refused(self, account: str) -> None:
        """The order socket's login was refused: the token it sent is the refused one."""
        stream = (
            self._accounts.leader_stream
            if account == LEADER
            else getattr(self._accounts.followers.get(account), "stream", None)
        )
        token = None if stream is None else stream.token_in_login
        self._tasks.spawn(self._tell(account, token), f"socket-refused-{account}")

    def order_token_refused(self, f: FollowerRuntime, reason: str) -> None:
        """An order answer said DH-901: the guarded broker already told the keeper, which
        mints a new token or freezes the follower; nothing more to do here."""
        if f.name not in self.keepers:
            self._tasks.spawn(self._tell(f.name, None), f"token-refused-{f.name}")

    def ip_refused(self, account: str, result: BrokerResult) -> None:
        """An order of ``account`` refused for the address it came from: freeze it."""
        ip = self._source_ip(account)
        where = ip or "this machine's own address (no source_ip is set)"
        reason = (
            f"Dhan refused {account}'s order because it came from {where}, which is not on "
            f"{account}'s static-IP whitelist at Dhan ({result.error_code}: "
            f"{redact(result.message)}). Whitelist {ip or 'the address'} for {account} in "
            f"Dhan's API settings, or set {account}'s source_ip to its whitelisted address"
        )
        self._tasks.spawn(
            self._freeze(freeze_scope(account), FreezeCause.INVALID_IP, reason),
            f"ip-refused-{account}",
        )

    async def replace(self, account: str, token: SecretStr) -> ReplaceOutcome:
        keeper = self.keepers.get(account)
        if keeper is None:
            known = ", ".join(self.keepers) or "none"
            return ReplaceOutcome(
                False, f"{account}: no such account in this engine (accounts: {known})"
            )
        return await keeper.replace(token)

    # --- internals ---------------------------------------------------------------------------

    async def _tell(self, account: str, token_used: str | None) -> None:
        await self.token_refused(account, token_used)

    def _token_listener(self, account: str) -> Callable[[str], None]:
        def use(token: str) -> None:
            self._use_token(account, token)

        return use

    def _use_token(self, account: str, token: str) -> None:
        if account == LEADER:
            broker = self._accounts.leader_broker
            stream = self._accounts.leader_stream
        else:
            follower = self._accounts.followers.get(account)
            broker = None if follower is None else follower.broker
            stream = None if follower is None else follower.stream
        if isinstance(broker, TokenHolder):  # a test's own broker may not take one
            broker.use_token(token)
        if stream is not None:
            stream.use_token(token)

    def _on_event(self, event: TokenEvent) -> None:
        alert = event.as_alert()
        self._notifier.alert(alert.code, alert.severity, redact(alert.message), alert.follower)
        if event.freezes:
            self._tasks.spawn(
                self._freeze(
                    freeze_scope(event.account), FreezeCause.TOKEN_REFUSED, redact(event.message)
                ),
                f"token-freeze-{event.account}",
            )

    def _follower(self, account: str) -> str | None:
        return None if account == LEADER else account

    def _source_ip(self, account: str) -> str | None:
        if account == LEADER:
            return self._settings.leader.source_ip
        follower = self._accounts.followers.get(account)
        return None if follower is None else follower.settings.source_ip
