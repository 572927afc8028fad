"""Screenshots of the demo for the README: `python -m tui.screenshots [--seed 7]`.

Runs the real demo (simulator + scripted leader + engine) headless at a fixed seed and saves
SVG and PNG of: the main screen with a lagging copy, the positions pane, a freeze, the
clear-freeze, token and position-sync dialogs, an order's timeline, the kill confirmation, the
KILLED state and the resume dialog. PNGs are rendered with cairosvg in DejaVu Sans Mono
(Debian: fonts-dejavu-core), a monospace font with box-drawing glyphs, so the columns stay
aligned.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from textual.screen import Screen

from engine.clock import IST
from engine.demo import DemoSession
from engine.domain import EngineState
from engine.views import AccountState
from tui.app import CopyTradeApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.timeline import TimelineScreen
from tui.screens.token import TokenScreen

SIZE = (120, 35)  # the size the terminal is made for (it reads at 100x30 too)
PNG_FONT = "DejaVu Sans Mono"
FIXED_CLOCK = IST.localize(datetime(2026, 11, 23, 10, 42, 5))


def svg_to_png(svg: str, target: Path) -> None:
    import cairosvg  # dev dependency; only the screenshot script needs it

    # Textual's SVG asks for Fira Code from the web; render with a local monospace font.
    local = re.sub(r"font-family:[^;\"]*", f"font-family: {PNG_FONT}", svg)
    local = re.sub(r"@font-face\s*\{[^}]*\}", "", local)
    cairosvg.svg2png(bytestring=local.encode(), write_to=str(target), output_width=SIZE[0] * 12)


async def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"demo did not reach: {what}")
        await asyncio.sleep(0.1)


async def capture(seed: int, out: Path) -> list[Path]:
    session = DemoSession(seed=seed, speed=2.0)
    app = CopyTradeApp(session, demo=True, clock=lambda: FIXED_CLOCK)
    saved: list[Path] = []

    def shot(name: str) -> None:
        app.flush_events()
        svg = app.export_screenshot(title=f"copytrade · {name.replace('-', ' ')}")
        (out / f"{name}.svg").write_text(svg, encoding="utf-8")
        svg_to_png(svg, out / f"{name}.png")
        saved.extend([out / f"{name}.svg", out / f"{name}.png"])

    def lagging() -> bool:  # as the screen shows it
        table = app.leader_table
        shown = table.keys()
        steps = [step for key in shown if (step := table.step_of(key)) is not None]
        return any(copy.behind_s >= 1 for step in steps for copy in step.lagging)

    def frozen(name: str) -> bool:
        return any(
            v.account == name and v.state is AccountState.FROZEN for v in session.account_views()
        )

    async def dialog(key: str, screen: type[Screen[bool]], name: str) -> None:
        await pilot.press(key)
        await _until(lambda: isinstance(app.screen, screen), 20, f"the {name}")
        await pilot.pause(0.5)
        shot(name)
        await pilot.press("escape")  # No: nothing is sent
        await _until(lambda: app.screen is app.screen_stack[0], 10, "the main screen")

    async with app.run_test(size=SIZE) as pilot:
        # Within the demo's first minute: positions read, a copy lagging its filled leader
        # (alpha's chased, beta's alerted), then beta's token expires and beta freezes.
        await _until(lambda: session.positions_view().read_at is not None, 60, "positions")
        # The leader's position from before the start: what a sync would place for it.
        await dialog("s", ConfirmScreen, "position-sync-dialog")
        await _until(lagging, 60, "a lagging copy")
        shot("main-screen")
        app.positions_table.focus()
        await pilot.pause(0.3)
        shot("positions-pane")
        app.leader_table.focus()
        await _until(lambda: frozen("beta"), 60, "beta frozen by its expired token")
        await pilot.pause(1.5)
        shot("freeze")
        await dialog("u", ConfirmScreen, "clear-freeze-dialog")
        await dialog("T", TokenScreen, "replace-token-dialog")
        table = app.leader_table
        table.move_cursor(row=min(3, table.row_count - 1))
        await pilot.press("enter")
        await _until(lambda: isinstance(app.screen, TimelineScreen), 10, "the timeline")
        await pilot.pause(0.8)
        shot("order-timeline")
        await pilot.press("escape")
        await pilot.pause(0.3)
        await pilot.press("k")
        await _until(lambda: isinstance(app.screen, ConfirmScreen), 10, "the kill confirmation")
        await pilot.pause(0.3)
        shot("kill-confirmation")
        await pilot.click("#yes")
        await _until(lambda: session.state is EngineState.KILLED, 10, "KILLED")
        await _until(
            lambda: session.kill_preview().open_follower_orders == 0, 30, "the cancels to complete"
        )
        await pilot.pause(1.0)
        shot("killed-state")
        await pilot.press("k")
        await _until(lambda: isinstance(app.screen, ConfirmScreen), 10, "the resume dialog")
        await pilot.pause(0.3)
        shot("resume-dialog")
        await pilot.press("escape")
        app.exit()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tui.screenshots", description=__doc__)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    args = parser.parse_args(argv)
    if shutil.which("fc-list") is not None:
        import subprocess

        fonts = subprocess.run(["fc-list", PNG_FONT], capture_output=True, text=True).stdout
        if not fonts.strip():
            print(
                f"{PNG_FONT} is not installed: apt-get install fonts-dejavu-core", file=sys.stderr
            )
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for path in asyncio.run(capture(args.seed, args.out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
