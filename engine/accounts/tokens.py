"""One account's access token over a trading day: where it comes from, when it ends, how it renews.

Dhan tokens last 24 hours. An account holds its token in one of three ways:

- pasted (``access_token``): renewed through Dhan's ``GET /v2/RenewToken`` before it ends; if
  Dhan will not renew it, a warning an hour before expiry asks for a new one;
- minted from the account's PIN + TOTP secret: at start when no token is pasted, before expiry,
  and whenever Dhan refuses the token in use (DH-901);
- replaced by hand while running (``replace``), e.g. from ``copytrade token set``.

The :class:`TokenKeeper` knows the expiry (from the mint/renew answer, Dhan's profile
``tokenValidity``, or the token's own ``exp`` claim, in that order), tells listeners when the
token changes, and publishes :class:`TokenEvent` s (each convertible to an engine ``Alert``).
Minted tokens live in memory only. No PIN, TOTP code or token ever reaches an event, a log
line or an exception text.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import pyotp
from pydantic import SecretStr

from engine.accounts.auth_api import AuthFailure, AuthFailureKind, DhanAuthApi, TokenGrant
from engine.accounts.credentials import normalise_totp_secret, totp_secret_problem
from engine.clock import IST, Clock
from engine.domain import Alert, Severity
from engine.secrets import register_secret

__all__ = [
    "HowItRenews",
    "NoTokenError",
    "ReplaceOutcome",
    "TokenEvent",
    "TokenEventKind",
    "TokenKeeper",
    "TokenStatus",
    "jwt_expiry",
]

log = logging.getLogger(__name__)

RENEW_BEFORE = timedelta(minutes=10)
WARN_BEFORE = timedelta(hours=1)
RETRY_AFTER = timedelta(seconds=30)  # a TOTP code lives 30 s; retrying sooner reuses it
IDLE_CHECK = timedelta(minutes=5)  # how often to look again when the expiry is unknown


class HowItRenews(StrEnum):
    MINTS = "mints from PIN+TOTP"
    RENEWS = "renews via Dhan"
    CANNOT = "cannot renew: set a new token (copytrade token set)"


class TokenStatus(StrEnum):
    NONE = "NONE"  # no token yet (not started, or the first mint failed)
    VALID = "VALID"
    REFUSED = "REFUSED"  # Dhan refused it and no new one could be had
    EXPIRED = "EXPIRED"  # past its expiry with no new one


class TokenEventKind(StrEnum):
    MINTED = "TOKEN_MINTED"
    RENEWED = "TOKEN_RENEWED"
    REPLACED = "TOKEN_REPLACED"
    RESTORED = "TOKEN_RESTORED"  # a working token again after REFUSED/EXPIRED: clear the freeze
    REFUSED = "TOKEN_REFUSED"  # Dhan refused the token, none to replace it: freeze the account
    EXPIRED = "TOKEN_EXPIRED"  # the token ran out with none to replace it: freeze the account
    EXPIRING = "TOKEN_EXPIRING"  # under an hour left and it cannot be renewed (once per token)
    RENEW_FAILED = "TOKEN_RENEW_FAILED"  # an attempt failed; another follows (once per streak)


_SEVERITY = {
    TokenEventKind.MINTED: Severity.INFO,
    TokenEventKind.RENEWED: Severity.INFO,
    TokenEventKind.REPLACED: Severity.INFO,
    TokenEventKind.RESTORED: Severity.INFO,
    TokenEventKind.REFUSED: Severity.CRITICAL,
    TokenEventKind.EXPIRED: Severity.CRITICAL,
    TokenEventKind.EXPIRING: Severity.WARNING,
    TokenEventKind.RENEW_FAILED: Severity.WARNING,
}


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """Something that happened to an account's token. Holds no secret."""

    account: str
    is_leader: bool
    kind: TokenEventKind
    at: datetime
    message: str  # one sentence naming the account
    expires_at: datetime | None = None

    @property
    def severity(self) -> Severity:
        return _SEVERITY[self.kind]

    @property
    def freezes(self) -> bool:
        """The account cannot trade until a working token comes back."""
        return self.kind in (TokenEventKind.REFUSED, TokenEventKind.EXPIRED)

    @property
    def unfreezes(self) -> bool:
        return self.kind is TokenEventKind.RESTORED

    def as_alert(self) -> Alert:
        return Alert(
            code=self.kind.value,
            severity=self.severity,
            message=self.message,
            at=self.at,
            follower=None if self.is_leader else self.account,
        )


@dataclass(frozen=True, slots=True)
class ReplaceOutcome:
    accepted: bool
    message: str  # one line for the user; no secret
    expires_at: datetime | None = None


class NoTokenError(RuntimeError):
    """The account has no token to use (the first mint failed, or it was never started)."""


def jwt_expiry(token: str) -> datetime | None:
    """The ``exp`` claim of a JWT as an IST datetime; None if it is not a readable JWT.

    Decoded only, never verified and never logged: it is a hint for when to renew.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
        exp = claims.get("exp") if isinstance(claims, dict) else None
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            return None
        return datetime.fromtimestamp(float(exp), IST)
    except (ValueError, UnicodeError, binascii.Error, OverflowError, OSError):
        return None


def _hhmm(when: datetime | None) -> str:
    return "an unknown time" if when is None else f"{when.astimezone(IST):%d %b %H:%M} IST"


def _minutes(delta: timedelta) -> str:
    minutes = max(int(delta.total_seconds() // 60), 0)
    return f"{minutes} min" if minutes < 120 else f"{minutes / 60:.1f} h"


class TokenKeeper:
    """Holds one account's current token and keeps it usable.

    Construction does no I/O. ``await start()`` once (mints when only PIN + TOTP are set,
    learns the expiry); then either ``await run(stop)`` as a task, or call ``await tick()``
    yourself. When a Dhan call of this account is refused for its token (DH-901), call
    ``await on_refused(token_used)``. Listen with ``add_token_listener`` (the new token, to
    put into the account's SDK headers and socket login) and ``add_event_listener``.
    """

    def __init__(
        self,
        account: str,
        client_id: str,
        *,
        auth: DhanAuthApi,
        clock: Clock,
        access_token: SecretStr | str | None = None,
        pin: SecretStr | str | None = None,
        totp_secret: SecretStr | str | None = None,
        is_leader: bool = False,
        renew_before: timedelta = RENEW_BEFORE,
        warn_before: timedelta = WARN_BEFORE,
        retry_after: timedelta = RETRY_AFTER,
    ) -> None:
        self.account = account
        self.client_id = client_id
        self.is_leader = is_leader
        self._auth = auth
        self._clock = clock
        self._pin = _plain(pin)
        self._totp_secret = normalise_totp_secret(_plain(totp_secret))
        if bool(self._pin) != bool(self._totp_secret):
            raise ValueError(f"{account}: PIN and TOTP secret go together (one is missing)")
        if self._totp_secret:
            _check_totp_secret(account, self._totp_secret)
        for secret in (self._pin, self._totp_secret):
            register_secret(secret)
        self._token: str | None = _plain(access_token)
        register_secret(self._token)
        self._expires_at: datetime | None = None
        self._renew_before = renew_before
        self._warn_before = warn_before
        self._lifetime: timedelta | None = None  # of the token we were granted (mint/renew)
        self._retry_after = retry_after
        self._status = TokenStatus.NONE
        self._started = False
        self._renew_refused = False  # Dhan would not renew this token
        self._warned_for: str | None = None  # the token the EXPIRING warning was raised for
        self._failing = False  # inside a streak of failed attempts (RENEW_FAILED said once)
        self._next_attempt_at: datetime | None = None
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._token_listeners: list[Callable[[str], None]] = []
        self._event_listeners: list[Callable[[TokenEvent], None]] = []

    def __repr__(self) -> str:
        return (
            f"TokenKeeper(account={self.account!r}, status={self._status.value}, "
            f"how={self.how_it_renews.value!r})"
        )

    __str__ = __repr__

    def __reduce__(self) -> str:  # never pickled: it holds secrets
        raise TypeError("TokenKeeper cannot be pickled")

    # --- what the rest of the engine reads --------------------------------------------------

    @property
    def can_mint(self) -> bool:
        return bool(self._pin and self._totp_secret)

    @property
    def how_it_renews(self) -> HowItRenews:
        if self.can_mint:
            return HowItRenews.MINTS
        return HowItRenews.CANNOT if self._renew_refused else HowItRenews.RENEWS

    @property
    def status(self) -> TokenStatus:
        return self._status

    @property
    def expires_at(self) -> datetime | None:
        return self._expires_at

    @property
    def has_token(self) -> bool:
        return self._token is not None

    def token(self) -> str:
        """The token to send now. NoTokenError when there is none."""
        if self._token is None:
            raise NoTokenError(f"{self.account}: no access token (see the token alerts)")
        return self._token

    def time_left(self) -> timedelta | None:
        """Until expiry (negative once past); None when the expiry is unknown."""
        if self._expires_at is None:
            return None
        return self._expires_at - self._clock.now()

    def describe(self) -> str:
        """One line for the check and the terminal: time left and how it renews."""
        left = self.time_left()
        if self._token is None:
            head = "no token"
        elif left is None:
            head = "expiry unknown"
        elif left.total_seconds() <= 0:
            head = f"expired at {_hhmm(self._expires_at)}"
        else:
            head = f"{left.total_seconds() / 3600:.1f} h left (until {_hhmm(self._expires_at)})"
        return f"{head}; {self.how_it_renews.value}"

    def close(self) -> None:
        """Close the account's auth session (the keeper is not used after this)."""
        self._auth.close()

    def add_token_listener(self, listener: Callable[[str], None]) -> None:
        """Called with each new token (minted, renewed, replaced). Never log its argument."""
        self._token_listeners.append(listener)

    def add_event_listener(self, listener: Callable[[TokenEvent], None]) -> None:
        self._event_listeners.append(listener)

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> TokenStatus:
        """Get a usable token: mint one if none was pasted, else learn the pasted one's expiry.

        A pasted token that Dhan refuses is replaced by a minted one when PIN + TOTP are set;
        otherwise the keeper ends REFUSED (event raised). An unreachable Dhan leaves a pasted
        token in use with the expiry its JWT claims.
        """
        async with self._lock:
            if self._token is None:
                if not self.can_mint:
                    raise ValueError(f"{self.account}: neither a token nor PIN + TOTP is set")
                await self._mint_locked(reason="start")
            else:
                await self._learn_expiry_locked(self._token)
            self._started = True
            return self._status

    async def tick(self) -> None:
        """Do whatever is due now: renew or mint before expiry, warn, mark expiry."""
        async with self._lock:
            now = self._clock.now()
            if self._next_attempt_at is not None and now < self._next_attempt_at:
                return
            self._next_attempt_at = None
            if self._token is None or self._status in (TokenStatus.REFUSED, TokenStatus.EXPIRED):
                if self.can_mint:
                    await self._mint_locked(reason="retry")
                elif self._token is not None:
                    await self._recheck_locked(self._token)
                return
            left = self.time_left()
            if left is None:
                return
            if left.total_seconds() <= 0:
                await self._expire_locked()
                return
            due = self._renew_due()
            if left <= due and not (self._renew_refused and not self.can_mint):
                await self._refresh_locked()
            left = self.time_left()
            if left is not None and left.total_seconds() > 0 and left <= self._warn_before:
                self._maybe_warn_locked(left)

    def seconds_until_next_tick(self) -> float:
        """How long ``run`` may sleep before something could be due."""
        now = self._clock.now()
        candidates: list[datetime] = []
        if self._next_attempt_at is not None:
            candidates.append(self._next_attempt_at)
        elif self._token is None or self._status in (TokenStatus.REFUSED, TokenStatus.EXPIRED):
            again = self.can_mint or self._token is not None  # mint, or ask Dhan again
            candidates.append(now + (self._retry_after if again else IDLE_CHECK))
        if self._expires_at is not None:
            for edge in (
                self._expires_at - self._renew_due(),
                self._expires_at - self._warn_before,
                self._expires_at,
            ):
                if edge > now:
                    candidates.append(edge)
        if not candidates:
            candidates.append(now + IDLE_CHECK)
        return max(min(c - now for c in candidates).total_seconds(), 0.05)

    def _renew_due(self) -> timedelta:
        """How long before expiry to renew: 10 min for a minted token, an hour for a pasted
        one (Dhan may refuse; time to warn), at most a third of a granted token's life (a
        short-lived token is not renewed the moment it arrives)."""
        due = self._renew_before if self.can_mint else self._warn_before
        if self._lifetime is not None and self._lifetime.total_seconds() > 0:
            due = min(due, self._lifetime / 3)
        return due

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set; wakes early when the token is replaced."""
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:  # a keeper that dies would let the token lapse silently
                log.exception("%s: token keeper tick failed", self.account)
            self._changed.clear()
            sleeper = asyncio.ensure_future(self._clock.sleep(self.seconds_until_next_tick()))
            waiters = [sleeper, asyncio.ensure_future(stop.wait())]
            waiters.append(asyncio.ensure_future(self._changed.wait()))
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def on_refused(self, token_used: str | None = None) -> bool:
        """Dhan refused ``token_used`` (DH-901). Returns True when a working token is in place.

        A refusal of a token already replaced is ignored. With PIN + TOTP a new token is
        minted at once; otherwise the keeper turns REFUSED and raises TOKEN_REFUSED.
        """
        async with self._lock:
            if token_used is not None and token_used != self._token and self._token is not None:
                return self._status is TokenStatus.VALID
            if self._status is TokenStatus.REFUSED:
                if not self.can_mint:
                    return False
                retry_at = self._next_attempt_at
                if retry_at is not None and self._clock.now() < retry_at:
                    return False  # a mint failed moments ago; tick() retries on schedule
            if self.can_mint and await self._mint_locked(reason="refused"):
                return True
            if self._status is TokenStatus.REFUSED:
                return False  # said once already
            self._set_status(
                TokenStatus.REFUSED,
                TokenEventKind.REFUSED,
                f"{self.account}: Dhan refused the access token (DH-901)"
                + (
                    " and a new one could not be minted from PIN+TOTP"
                    if self.can_mint
                    else f"; set a new one with `copytrade token set {self.account}`"
                ),
            )
            return False

    async def replace(self, new_token: SecretStr | str) -> ReplaceOutcome:
        """Use ``new_token`` from now on, if Dhan does not refuse it (checked with its profile).

        Refused: the old token stays and the answer says why. Dhan unreachable: the new token
        is taken (the user gave it on purpose) with the expiry its JWT claims.
        """
        token = _plain(new_token)
        if not token:
            return ReplaceOutcome(False, f"{self.account}: the new token is empty")
        register_secret(token)
        async with self._lock:
            profile = await asyncio.to_thread(self._auth.profile, token)
            if isinstance(profile, AuthFailure) and profile.kind is AuthFailureKind.REFUSED:
                return ReplaceOutcome(
                    False, f"{self.account}: Dhan refused the new token ({profile}); kept the old"
                )
            expires = (
                profile.token_valid_until
                if not isinstance(profile, AuthFailure) and profile.token_valid_until
                else jwt_expiry(token)
            )
            verified = "" if not isinstance(profile, AuthFailure) else " (not verified: Dhan "
            verified += "" if not isinstance(profile, AuthFailure) else "could not be reached)"
            self._install_locked(
                token,
                expires,
                TokenEventKind.REPLACED,
                f"{self.account}: access token replaced, valid until {_hhmm(expires)}{verified}",
            )
            self._changed.set()
            return ReplaceOutcome(True, f"{self.account}: token replaced{verified}", expires)

    # --- internals (called with the lock held) -----------------------------------------------

    async def _learn_expiry_locked(self, token: str) -> None:
        profile = await asyncio.to_thread(self._auth.profile, token)
        if isinstance(profile, AuthFailure):
            if profile.token_refused or (
                profile.kind is AuthFailureKind.REFUSED and profile.http_status in (401, 403)
            ):
                if self.can_mint and await self._mint_locked(reason="refused"):
                    return
                self._set_status(
                    TokenStatus.REFUSED,
                    TokenEventKind.REFUSED,
                    f"{self.account}: Dhan refused the access token ({profile.code or 'refused'})"
                    + (
                        "; set a new one with `copytrade token set " + self.account + "`"
                        if not self.can_mint
                        else " and a new one could not be minted from PIN+TOTP"
                    ),
                )
                return
            # Dhan unreachable: keep the pasted token, trust its own claim for the expiry.
            self._expires_at = jwt_expiry(token)
            self._status = TokenStatus.VALID
            return
        self._expires_at = profile.token_valid_until or jwt_expiry(token)
        self._status = TokenStatus.VALID

    async def _recheck_locked(self, token: str) -> None:
        """A refused or expired pasted token: does Dhan take it again (the user renewed it at
        Dhan, or the refusal was Dhan's passing mistake)? Asked every ``retry_after``."""
        profile = await asyncio.to_thread(self._auth.profile, token)
        now = self._clock.now()
        expires = None if isinstance(profile, AuthFailure) else profile.token_valid_until
        if isinstance(profile, AuthFailure) or (expires is not None and expires <= now):
            self._next_attempt_at = now + self._retry_after
            return
        self._expires_at = expires or jwt_expiry(token)
        self._status = TokenStatus.VALID
        self._emit(
            TokenEventKind.RESTORED,
            f"{self.account}: Dhan takes the access token again, valid until "
            f"{_hhmm(self._expires_at)}",
            self._expires_at,
        )

    async def _refresh_locked(self) -> None:
        """Before expiry: renew at Dhan, else mint; on failure retry later, warn if < 1 h."""
        assert self._token is not None
        if not self._renew_refused:
            grant = await asyncio.to_thread(self._auth.renew, self._token)
            if isinstance(grant, TokenGrant):
                self._accept_grant_locked(grant, TokenEventKind.RENEWED, "renewed at Dhan")
                return
            if grant.kind is AuthFailureKind.REFUSED:
                self._renew_refused = True  # e.g. a minted token Dhan does not renew
            failure: AuthFailure | None = grant
        else:
            failure = None
        if self.can_mint and await self._mint_locked(reason="expiry"):
            return
        self._note_failure_locked(failure)

    async def _mint_locked(self, *, reason: str) -> bool:
        assert self._pin is not None and self._totp_secret is not None
        # The code itself is not registered: it dies in 30 s, and masking every 6-digit run
        # that matches one would blot order ids out of the logs. URLs mask it (secrets.py).
        code = pyotp.TOTP(self._totp_secret).at(self._clock.now())
        grant = await asyncio.to_thread(self._auth.mint, self._pin, code)
        if isinstance(grant, AuthFailure):
            self._note_failure_locked(grant, minting=True)
            return False
        self._accept_grant_locked(grant, TokenEventKind.MINTED, "minted from PIN+TOTP")
        return True

    def _accept_grant_locked(self, grant: TokenGrant, kind: TokenEventKind, how: str) -> None:
        token = grant.token.get_secret_value()
        expires = grant.expires_at or jwt_expiry(token)
        self._install_locked(
            token,
            expires,
            kind,
            f"{self.account}: new access token {how}, valid until {_hhmm(expires)}",
        )

    def _install_locked(
        self, token: str, expires: datetime | None, kind: TokenEventKind, message: str
    ) -> None:
        # After start, any state but VALID meant the account could not trade: say it can now.
        was_down = self._started and self._status is not TokenStatus.VALID
        register_secret(token)
        self._token = token
        self._expires_at = expires
        self._lifetime = None if expires is None else expires - self._clock.now()
        self._status = TokenStatus.VALID
        self._failing = False
        self._next_attempt_at = None
        self._renew_refused = False  # a new token: Dhan may renew this one, try when due
        self._emit(kind, message, expires)
        if was_down:
            self._emit(
                TokenEventKind.RESTORED, f"{self.account}: a working access token again", expires
            )
        for listener in list(self._token_listeners):
            try:
                listener(token)
            except Exception:
                log.exception("%s: token listener failed", self.account)

    def _note_failure_locked(self, failure: AuthFailure | None, *, minting: bool = False) -> None:
        self._next_attempt_at = self._clock.now() + self._retry_after
        left = self.time_left()
        if failure is not None and not self._failing:
            self._failing = True
            what = "mint a token from PIN+TOTP" if minting else "renew the access token"
            self._emit(
                TokenEventKind.RENEW_FAILED,
                f"{self.account}: could not {what} ({failure}); trying again in "
                f"{int(self._retry_after.total_seconds())} s",
                self._expires_at,
            )
        if self._token is None and minting:
            self._status = TokenStatus.NONE
        if left is not None and 0 < left.total_seconds() <= self._warn_before.total_seconds():
            self._maybe_warn_locked(left)

    def _maybe_warn_locked(self, left: timedelta) -> None:
        cannot = (not self.can_mint and self._renew_refused) or self._failing
        if not cannot or self._warned_for == self._token:
            return
        self._warned_for = self._token
        self._emit(
            TokenEventKind.EXPIRING,
            f"{self.account}: access token expires at {_hhmm(self._expires_at)} (in "
            f"{_minutes(left)}) and cannot be renewed"
            + (
                ""
                if self.can_mint
                else f"; set a new one with `copytrade token set {self.account}`"
            ),
            self._expires_at,
        )

    async def _expire_locked(self) -> None:
        if self.can_mint and await self._mint_locked(reason="expired"):
            return
        if self._status is not TokenStatus.EXPIRED:
            self._set_status(
                TokenStatus.EXPIRED,
                TokenEventKind.EXPIRED,
                f"{self.account}: access token expired at {_hhmm(self._expires_at)}"
                + (
                    ""
                    if self.can_mint
                    else f"; set a new one with `copytrade token set {self.account}`"
                ),
            )

    def _set_status(self, status: TokenStatus, kind: TokenEventKind, message: str) -> None:
        self._status = status
        self._emit(kind, message, self._expires_at)

    def _emit(self, kind: TokenEventKind, message: str, expires: datetime | None) -> None:
        event = TokenEvent(
            account=self.account,
            is_leader=self.is_leader,
            kind=kind,
            at=self._clock.now(),
            message=message,
            expires_at=expires,
        )
        level = {
            Severity.INFO: logging.INFO,
            Severity.WARNING: logging.WARNING,
            Severity.ERROR: logging.ERROR,
            Severity.CRITICAL: logging.CRITICAL,
        }[event.severity]
        log.log(level, "%s", message)
        for listener in list(self._event_listeners):
            try:
                listener(event)
            except Exception:
                log.exception("%s: token event listener failed", self.account)


def _plain(value: SecretStr | str | None) -> str | None:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return None
    value = value.strip()
    return value or None


def _check_totp_secret(account: str, secret: str) -> None:
    problem = totp_secret_problem(secret)
    if problem:
        raise ValueError(f"{account}: the TOTP secret {problem}")
