"""Pure formatting for the panes: engine values in, (text, style) cells out.

Nothing here touches Textual, so every rule (colours, abbreviations, redaction) is testable
as a plain function. A cell is a ``(text, style)`` pair; the tables compare these pairs to
decide which cells changed and build Rich ``Text`` only for those.
"""

from __future__ import annotations

import re
from datetime import datetime

from engine.clock import to_ist
from engine.domain import Alert, MirrorState, OrderSnapshot, OrderStatus, OrderType, Severity
from engine.secrets import MASK
from engine.secrets import redact as engine_redact
from engine.views import (
    AccountPnl,
    AccountState,
    AccountView,
    CopyStepView,
    EngineStats,
    FollowerOrderView,
    FollowerPositionView,
    LimiterView,
    LimitWindow,
    PositionView,
)

Cell = tuple[str, str]
"""One table cell: its text and a Rich style string."""

# --- redaction --------------------------------------------------------------------------------

_SECRET_PATTERNS: tuple[re.Pattern[str], ...] = (
    # JWTs (Dhan access tokens are JWTs): header.payload.signature, base64url.
    re.compile(r"eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*"),
    # key=value / key: value pairs whose key names a secret ("Authorization Bearer x" too);
    # a bare space after "token" is words ("Access token invalid"), not a value.
    re.compile(
        r"(?i)\b(access[_\-]?token|client[_\-]?secret|api[_\-]?secret|api[_\-]?key|token|"
        r"password|secret|authorization)\b(\s*[:=]\s*|(?<=authorization)\s+)"
        r"(?:bearer\s+)?(['\"]?)[^\s'\",;}]+"
    ),
    # Long opaque base64/hex blobs.
    re.compile(r"\b[A-Za-z0-9+/_\-]{48,}={0,2}"),
)


_BEARER = re.compile(r"(?i)\bbearer\s+[^\s'\",;}]+")


def redact(text: str) -> str:
    """Mask anything that looks like a credential; the engine should never send one anyway.

    First every secret the settings registered (tokens, PINs, TOTP secrets, which look like
    nothing in particular), then the credential-shaped patterns below.
    """
    out = engine_redact(text).replace(MASK, "[redacted]")
    out = _SECRET_PATTERNS[0].sub("[redacted]", out)
    out = _SECRET_PATTERNS[1].sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", out)
    out = _BEARER.sub("Bearer [redacted]", out)
    return _SECRET_PATTERNS[2].sub("[redacted]", out)


def plain_words(text: str, limit: int = 300) -> str:
    """Our own words (a state, how a token renews): registered secrets, JWTs and long blobs
    are still masked, but not every word after "token", which would mask "token 3h left"."""
    out = engine_redact(text).replace(MASK, "[redacted]")
    out = _SECRET_PATTERNS[2].sub("[redacted]", _SECRET_PATTERNS[0].sub("[redacted]", out))
    flat = " ".join(out.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def one_line(text: str, limit: int = 300) -> str:
    """Redacted, single-line, bounded: what any free text from the engine goes through."""
    flat = " ".join(redact(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --- time ---------------------------------------------------------------------------------------


def hms(at: datetime | None) -> str:
    """HH:MM:SS in IST (naive times are taken to be IST already, as Dhan sends them)."""
    if at is None:
        return "--:--:--"
    return to_ist(at).strftime("%H:%M:%S")


def age(seconds: float) -> str:
    if seconds < 0:
        seconds = 0
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


# --- numbers ------------------------------------------------------------------------------------


def price(value: float) -> str:
    return "-" if value == 0 else f"{value:.2f}"


def signed(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}"


def millis(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def short_id(order_id: str, width: int) -> str:
    """Keep the distinctive tail of a long order id."""
    if len(order_id) <= width:
        return order_id
    return "…" + order_id[-(width - 1) :]


# --- leader orders ------------------------------------------------------------------------------

STATUS_STYLE: dict[OrderStatus, str] = {
    OrderStatus.TRADED: "green",
    OrderStatus.PENDING: "yellow",
    OrderStatus.PART_TRADED: "cyan",
    OrderStatus.TRANSIT: "yellow",
    OrderStatus.TRIGGERED: "cyan",
    OrderStatus.CANCELLED: "dim",
    OrderStatus.EXPIRED: "dim",
    OrderStatus.CLOSED: "dim",
    OrderStatus.REJECTED: "bold red",
}

ORDER_TYPE_SHORT: dict[OrderType, str] = {
    OrderType.LIMIT: "LMT",
    OrderType.MARKET: "MKT",
    OrderType.STOP_LOSS: "SL",
    OrderType.STOP_LOSS_MARKET: "SL-M",
}

LEADER_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("time", "Time", 8),
    ("order_id", "Order", 11),
    ("symbol", "Symbol", 22),
    ("copies", "Copies in step", 15),
    ("side", "Side", 4),
    ("type", "Type", 4),
    ("product", "Prod", 5),
    ("qty", "Fill/Qty", 9),
    ("price", "Price/Trig", 15),
    ("validity", "Val", 3),
    ("status", "Status", 11),
)

PRODUCT_SHORT: dict[str, str] = {"INTRADAY": "INTRA", "MARGIN": "NRML"}


def price_trigger(snapshot: OrderSnapshot) -> str:
    p = "MKT" if snapshot.order_type in (OrderType.MARKET, OrderType.STOP_LOSS_MARKET) else ""
    base = p or price(snapshot.price)
    if snapshot.trigger_price:
        return f"{base}/{snapshot.trigger_price:.2f}"
    return base


def copy_step_cell(step: CopyStepView | None, default: str) -> Cell:
    """ "2/2" in the row's colour; a lagging copy stands out with its timer."""
    if step is None:
        return ("-", "dim")
    if step.lagging:
        return (step.label, "bold black on yellow")
    if step.failed:
        return (step.label, "bold red")
    return (step.label, default if step.in_step == step.copies else "yellow")


def leader_cells(
    snapshot: OrderSnapshot, seen_at: datetime, step: CopyStepView | None = None
) -> tuple[Cell, ...]:
    style = STATUS_STYLE.get(snapshot.status, "")
    symbol = snapshot.trading_symbol or snapshot.security_id
    if snapshot.amo:
        symbol = f"{symbol} AMO"
    return (
        (hms(snapshot.created_at or snapshot.updated_at or seen_at), style),
        (snapshot.order_id, style),
        (one_line(symbol, 40), style),
        copy_step_cell(step, style),
        (snapshot.side.value, style),
        (ORDER_TYPE_SHORT.get(snapshot.order_type, snapshot.order_type.value), style),
        (PRODUCT_SHORT.get(snapshot.product.value, snapshot.product.value), style),
        (f"{snapshot.filled_qty}/{snapshot.quantity}", style),
        (price_trigger(snapshot), style),
        (snapshot.validity.value, style),
        (snapshot.status.value, style),
    )


# --- follower orders ----------------------------------------------------------------------------

FOLLOWER_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("follower", "Follower", 10),
    ("leader", "Leader ord", 11),
    ("status", "Status", 16),
    ("qty", "Qty", 5),
    ("filled", "Fill", 5),
    ("avg", "Avg", 8),
    ("slip", "Slip", 6),
    ("latency", "ms", 5),
    ("reason", "Reason", 30),
    ("order_id", "Follower ord", 16),
)

_BROKER_STYLE: dict[str, str] = {
    "TRADED": "green",
    "PART_TRADED": "cyan",
    "PENDING": "yellow",
    "TRANSIT": "yellow",
    "TRIGGERED": "cyan",
    "CANCELLED": "dim",
    "EXPIRED": "dim",
    "CLOSED": "dim",
    "REJECTED": "bold red",
}


def follower_style(view: FollowerOrderView) -> str:
    if view.mirror_state is MirrorState.FAILED:
        return "bold red"
    if view.mirror_state is MirrorState.SKIPPED:
        return "magenta"
    if view.mirror_state is MirrorState.PLACING:
        return "cyan"
    return _BROKER_STYLE.get(view.broker_status.upper(), "yellow")


def follower_status(view: FollowerOrderView) -> str:
    if view.broker_status and view.mirror_state in (MirrorState.LIVE, MirrorState.DONE):
        text = f"{view.mirror_state.value} {view.broker_status}"
    else:
        text = view.mirror_state.value
    return text


def follower_cells(view: FollowerOrderView, behind_s: float | None = None) -> tuple[Cell, ...]:
    """A copy's row; a copy lagging its filled leader is highlighted with its timer."""
    style = follower_style(view) if behind_s is None else "bold black on yellow"
    shows_reason = view.mirror_state in (MirrorState.SKIPPED, MirrorState.FAILED) or (
        view.broker_status.upper() == "REJECTED"
    )
    reason = one_line(view.reason, 200) if shows_reason or view.reason else ""
    if view.by_hand:  # changed at Dhan by hand: the engine no longer modifies it
        reason = f"managed by hand; {reason}" if reason else "managed by hand"
    return (
        (one_line(view.follower, 40), style),
        (short_id(view.leader_order_id, 11), style),
        (
            follower_status(view) if behind_s is None else f"behind {behind_s:.0f} s",
            style,
        ),
        (str(view.quantity), style),
        (str(view.filled_qty), style),
        (price(view.avg_price), style),
        (signed(view.slippage), _slip_style(view.slippage, style)),
        (millis(view.latency_ms), style),
        (reason, "bold red" if shows_reason and reason else style),
        (view.follower_order_id or "-", style),
    )


def _slip_style(slippage: float | None, default: str) -> str:
    if slippage is None or slippage == 0:
        return default
    return "red" if slippage > 0 else "green"


# --- limiter ------------------------------------------------------------------------------------

_WINDOW_SHORT = {"second": "s", "minute": "m", "hour": "h", "day": "d"}
_BAR_WIDTH = 4


def window_style(window: LimitWindow) -> str:
    if window.limit <= 0:
        return "dim"
    left = window.remaining / window.limit
    if left <= 0.1:
        return "bold red"
    if left <= 0.3:
        return "yellow"
    return "green"


def bar(window: LimitWindow, width: int = _BAR_WIDTH) -> str:
    """Remaining capacity as a small bar: full when the bucket is full."""
    if window.limit <= 0:
        return "·" * width
    filled = round(width * window.remaining / window.limit)
    if window.remaining > 0 and filled == 0:
        filled = 1
    return "█" * filled + "░" * (width - filled)


def window_segment(window: LimitWindow) -> tuple[str, str]:
    label = _WINDOW_SHORT.get(window.name, window.name[:1])
    text = f"{label}{bar(window)} {window.remaining:>4}/{window.limit:<4}"
    return text, window_style(window)


def limiter_signature(view: LimiterView) -> tuple[object, ...]:
    return (
        tuple((w.name, w.limit, w.used) for w in view.windows),
        view.queue_depth,
        view.throttled,
        view.dh904,
    )


# --- alerts -------------------------------------------------------------------------------------

SEVERITY_STYLE: dict[Severity, str] = {
    Severity.INFO: "dim",
    Severity.WARNING: "yellow",
    Severity.ERROR: "red",
    Severity.CRITICAL: "bold white on red",
}

SEVERITY_SHORT: dict[Severity, str] = {
    Severity.INFO: "INFO",
    Severity.WARNING: "WARN",
    Severity.ERROR: "ERR",
    Severity.CRITICAL: "CRIT",
}

TIMES = "\u00d7"  # the multiplication sign of "x3" counts


def alert_message(alert: Alert) -> str:
    parts = []
    if alert.follower:
        parts.append(f"[{alert.follower}]")
    parts.append(alert.message)
    if alert.leader_order_id:
        parts.append(f"(order {alert.leader_order_id})")
    return one_line(" ".join(parts), 300)


# --- stats --------------------------------------------------------------------------------------


def stats_cells(stats: EngineStats) -> tuple[Cell, ...]:
    """Today's figures as styled pieces: only the worrying ones are coloured."""
    rate = stats.success_rate
    pct = "-" if rate is None else f"{rate * 100:.1f}%"
    return (
        (f"copied {stats.replicated}", "green" if stats.replicated else ""),
        (" · ", "dim"),
        (f"failed {stats.failed}", "bold red" if stats.failed else ""),
        (f" ({pct} ok)", "" if rate is None or rate >= 0.99 else "yellow"),
        (" · ", "dim"),
        (
            f"latency p50 {millis(stats.latency_p50_ms)} ms p99 {millis(stats.latency_p99_ms)} ms",
            "",
        ),
        (" · ", "dim"),
        (f"slippage {signed(stats.mean_slippage)}", ""),
        (" · ", "dim"),
        (f"disconnects {stats.disconnects}", "yellow" if stats.disconnects else ""),
    )


def stats_text(stats: EngineStats) -> str:
    return "".join(text for text, _ in stats_cells(stats))


# --- accounts -----------------------------------------------------------------------------------

ACCOUNT_STATE_STYLE: dict[AccountState, str] = {
    AccountState.ARMED: "bold black on green",
    AccountState.FROZEN: "bold black on cyan",
    AccountState.KILLED: "bold white on red",
    AccountState.DRAINING: "bold black on yellow",
    AccountState.STOPPED: "bold white on red",
    AccountState.STARTING: "bold black on yellow",
}

WINDOW_BAR = 8


def token_words(view: AccountView) -> tuple[str, str]:
    """The token's time left and how it renews, and a colour when it needs the trader."""
    if view.token_status in ("REFUSED", "EXPIRED", "NONE"):
        return f"token {view.token_status.lower()}; {view.token_renewal}", "bold red"
    left = view.token_left_s
    if left is None:
        head = "token: expiry unknown"
    elif left <= 0:
        head = "token expired"
    else:
        head = f"token {age(left)} left"
    cannot = view.token_renewal.startswith("cannot") or "not renewed" in view.token_renewal
    urgent = left is not None and left < 3600 and cannot
    return f"{head}; {view.token_renewal}", "bold red" if urgent else ""


def window_words(window: LimitWindow, bar_width: int = WINDOW_BAR) -> tuple[str, str]:
    """`minute ███░░░░░ 40 of 250 used`: what a trader reads at a glance."""
    used = min(max(window.used, 0), window.limit) if window.limit > 0 else 0
    filled = 0 if window.limit <= 0 else round(bar_width * used / window.limit)
    if used and filled == 0:
        filled = 1
    bar_text = "█" * filled + "░" * (bar_width - filled)
    return f"{window.name:<6} {bar_text} {window.used} of {window.limit} used", window_style(window)


def account_from_limiter(view: LimiterView, known: AccountView | None) -> AccountView:
    """Fold a rate-limiter update into what the pane knows of the account."""
    base = known or AccountView(view.account, AccountState.STARTING)
    return AccountView(
        base.account,
        base.state,
        base.why,
        base.is_leader or view.account == "leader",
        base.open_copies,
        base.hand_managed,
        base.token_left_s,
        base.token_renewal,
        base.token_status,
        base.source_ip,
        view.windows,
        view.queue_depth,
        view.throttled,
        view.dh904,
    )


# --- positions ----------------------------------------------------------------------------------

POSITION_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("who", "Instrument · follower", 23),
    ("net", "Net", 5),
    ("target", "Target", 6),
    ("diff", "Difference", 15),
    ("realised", "Realised", 9),
    ("unrealised", "Unrealised", 10),
    ("avg", "Avg price", 9),
)


def money(value: float) -> str:
    if abs(value) < 0.005:
        return "0.00"  # never "-0.00"
    return f"{value:+,.2f}" if abs(value) < 1_000_000 else f"{value / 100_000:+,.1f} L"


def _pnl_style(value: float) -> str:
    if value > 0:
        return "green"
    if value < 0:
        return "red"
    return "dim"


def difference_cell(fp: FollowerPositionView) -> Cell:
    diff = fp.difference
    if diff == 0:
        return ("in line", "green")
    if fp.closed_by_working_orders:
        return (f"{diff:+d} closing", "yellow")
    return (f"{diff:+d} not closing", "bold red")


def position_leader_cells(row: PositionView) -> tuple[Cell, ...]:
    """The instrument's row: the leader's net, P&L and average price."""
    product = "" if row.product == "INTRADAY" else f" {PRODUCT_SHORT.get(row.product, row.product)}"
    return (
        (one_line(f"{row.symbol}{product}", 60), "bold"),
        (f"{row.leader_net:+d}" if row.leader_net else "0", "bold"),
        ("", ""),
        ("the leader", "dim"),
        (money(row.leader_realized_pnl), _pnl_style(row.leader_realized_pnl)),
        (money(row.leader_unrealized_pnl), _pnl_style(row.leader_unrealized_pnl)),
        (price(row.leader_avg_price), ""),
    )


def position_follower_cells(fp: FollowerPositionView) -> tuple[Cell, ...]:
    return (
        (f"  {one_line(fp.follower, 40)}", ""),
        (f"{fp.net:+d}" if fp.net else "0", ""),
        (f"{fp.target:+d}" if fp.target else "0", "dim"),
        difference_cell(fp),
        (money(fp.realized_pnl), _pnl_style(fp.realized_pnl)),
        (money(fp.unrealized_pnl), _pnl_style(fp.unrealized_pnl)),
        (price(fp.avg_price), ""),
    )


def position_total_cells(total: AccountPnl) -> tuple[Cell, ...]:
    return (
        (f"P&L {one_line(total.account, 40)}", "bold"),
        ("", ""),
        ("", ""),
        (money(total.total), f"bold {_pnl_style(total.total)}"),
        (money(total.realized), _pnl_style(total.realized)),
        (money(total.unrealized), _pnl_style(total.unrealized)),
        ("", ""),
    )
