"""Screenshots of the demo for the README: `python -m tui.screenshots [--seed 7]`.

Runs the real demo (simulator + scripted leader + engine) headless at a fixed seed and saves
SVG and PNG of: the main screen, an order's timeline, the kill confirmation and the KILLED
state. PNGs are rendered with cairosvg in DejaVu Sans Mono (Debian: fonts-dejavu-core), a
monospace font with box-drawing glyphs, so the columns stay aligned.
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

from engine.clock import IST
from engine.demo import DemoSession
from engine.domain import EngineState
from tui.app import CopyTradeApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.timeline import TimelineScreen

SIZE = (160, 46)
PNG_FONT = "DejaVu Sans Mono"
FIXED_CLOCK = IST.localize(datetime(2026, 11, 23, 10, 42, 5))


def svg_to_png(svg: str, target: Path) -> None:
    import cairosvg  # dev dependency; only the screenshot script needs it

    # Textual's SVG asks for Fira Code from the web; render with a local monospace font.
    local = re.sub(r"font-family:[^;\"]*", f"font-family: {PNG_FONT}", svg)
    local = re.sub(r"@font-face\s*\{[^}]*\}", "", local)
    cairosvg.svg2png(bytestring=local.encode(), write_to=str(target), output_width=SIZE[0] * 11)


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

    async with app.run_test(size=SIZE) as pilot:
        # Far enough into the scripted session that every pane has something to say:
        # fills, a burst against the rate limit, a socket drop, a rejection.
        await _until(
            lambda: session.leader.rounds > 0 or len(session.engine.leader_orders()) >= 24,
            240,
            "the rejected cash order",
        )
        await pilot.pause(1.5)
        shot("main-screen")
        table = app.leader_table
        table.focus()
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
            lambda: session.kill_preview().open_follower_orders == 0, 20, "the cancels to complete"
        )
        await pilot.pause(1.0)
        shot("killed-state")
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
