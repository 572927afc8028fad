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
from engine.views import EngineStats, FollowerOrderView, LimiterView, LimitWindow

Cell = tuple[str, str]
"""One table cell: its text and a Rich style string."""

# --- redaction --------------------------------------------------------------------------------

_SECRET_PATTERNS: tuple[re.Pattern[str], ...] = (
    # JWTs (Dhan access tokens are JWTs): header.payload.signature, base64url.
    re.compile(r"eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*"),
    # key=value / key: value pairs whose key names a secret.
    re.compile(
        r"(?i)\b(access[_\-]?token|client[_\-]?secret|api[_\-]?secret|api[_\-]?key|token|"
        r"password|secret|authorization)\b(\s*[:=]\s*|\s+)(['\"]?)[^\s'\",;}]+"
    ),
    # Long opaque base64/hex blobs.
    re.compile(r"\b[A-Za-z0-9+/_\-]{48,}={0,2}"),
)


def redact(text: str) -> str:
    """Mask anything that looks like a credential; the engine should never send one anyway.

    First every secret the settings registered (tokens, PINs, TOTP secrets, which look like
    nothing in particular), then the credential-shaped patterns below.
    """
    out = engine_redact(text).replace(MASK, "[redacted]")
    out = _SECRET_PATTERNS[0].sub("[redacted]", out)
    out = _SECRET_PATTERNS[1].sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", out)
    return _SECRET_PATTERNS[2].sub("[redacted]", out)


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
    ("symbol", "Symbol", 24),
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


def leader_cells(snapshot: OrderSnapshot, seen_at: datetime) -> tuple[Cell, ...]:
    style = STATUS_STYLE.get(snapshot.status, "")
    symbol = snapshot.trading_symbol or snapshot.security_id
    if snapshot.amo:
        symbol = f"{symbol} AMO"
    return (
        (hms(snapshot.created_at or snapshot.updated_at or seen_at), style),
        (snapshot.order_id, style),
        (one_line(symbol, 40), style),
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
        return f"{view.mirror_state.value} {view.broker_status}"
    return view.mirror_state.value


def follower_cells(view: FollowerOrderView) -> tuple[Cell, ...]:
    style = follower_style(view)
    shows_reason = view.mirror_state in (MirrorState.SKIPPED, MirrorState.FAILED) or (
        view.broker_status.upper() == "REJECTED"
    )
    reason = one_line(view.reason, 200) if shows_reason or view.reason else ""
    return (
        (one_line(view.follower, 40), style),
        (short_id(view.leader_order_id, 11), style),
        (follower_status(view), style),
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
