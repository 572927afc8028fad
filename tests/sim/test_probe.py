"""``copytrade probe`` against the simulator: under each dialect profile the report, loaded as a
profile, reproduces the simulator's answers (and probing a simulator run with that loaded
profile gives the same report)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

import pytest

from engine.dhan.probe import ProbeOrder, probe_account
from engine.simulator.profile import load_profile
from engine.simulator.server import DhanSimulator

pytestmark = pytest.mark.timeout(60)

CLIENT, TOKEN = "1100000001", "tok-probe-account"
PROFILES = ["live", "classic", "lookup-empty200", "lookup-emptylist", "lookup-dh907",
            "pascal-upper", "no-modify-alert", "cancel-202"]  # fmt: skip
PROBED = (
    "unknown_order_id",
    "unknown_correlation_id",
    "order_by_id_shape",
    "socket_keys",
    "socket_status_case",
    "modify_alert",
    "cancel_response",
)


async def probe_simulator(profile: object, out: Path) -> dict[str, object]:
    sim = DhanSimulator(accounts={CLIENT: TOKEN}, profile=profile)  # type: ignore[arg-type]
    await sim.start(host="127.0.0.1", port=0)
    try:
        # One order already in today's book, so the order-by-id shape can be read.
        sim.place_manual_order(
            CLIENT,
            transactionType="BUY",
            exchangeSegment="NSE_EQ",
            securityId="2885",
            quantity=1,
            orderType="LIMIT",
            price=1000.0,
            productType="CNC",
        )
        far = round(sim.price("NSE_EQ", "2885") * 0.9, 1)
        path, result = await probe_account(
            client_id=CLIENT,
            token=TOKEN,
            rest_url=sim.rest_url,
            ws_url=sim.ws_url,
            out_dir=out,
            order=ProbeOrder.parse(f"NSE_EQ:2885:{far}"),
        )
        assert not [o for o in sim.orders(CLIENT) if o["orderStatus"] == "PENDING"][1:], (
            "the probe order was left open"
        )
    finally:
        await sim.stop()
    assert not result.notes, result.notes
    loaded: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


@pytest.mark.parametrize("name", PROFILES)
async def test_probe_report_loads_as_the_profile_it_met(name: str, tmp_path: Path) -> None:
    report = await probe_simulator(name, tmp_path / "first")
    assert set(report) == set(PROBED)
    met, loaded = load_profile(name), load_profile(str(tmp_path / "first" / "probe-profile.json"))
    for key in PROBED:
        assert getattr(loaded, key) == getattr(met, key), key
    # A simulator answering as the report says answers the probe the same way.
    again = await probe_simulator(loaded, tmp_path / "second")
    assert again == report
    written = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "first").iterdir())
    assert TOKEN not in written and CLIENT not in written


async def test_probe_command_says_what_it_will_do_asks_and_writes(tmp_path: Path) -> None:
    sim = DhanSimulator(accounts={CLIENT: TOKEN, "1100000002": "tok-probe-follower"})
    await sim.start(host="127.0.0.1", port=0)
    env = tmp_path / "probe.env"
    env.write_text(
        f"COPYTRADE_LEADER__CLIENT_ID={CLIENT}\n"
        f"COPYTRADE_LEADER__ACCESS_TOKEN={TOKEN}\n"
        'COPYTRADE_FOLLOWERS=[{"name": "alpha", "client_id": "1100000002", '
        '"access_token": "tok-probe-follower"}]\n'
        f"COPYTRADE_DHAN__REST_URL={sim.rest_url}\n"
        f"COPYTRADE_DHAN__ORDER_WS_URL={sim.ws_url}\n"
        f"COPYTRADE_DB_PATH={tmp_path / 'engine.db'}\n",
        encoding="utf-8",
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COPYTRADE_")}
    clean = {k: v for k, v in clean.items() if "proxy" not in k.lower()}
    args = ["-m", "tui.cli", "probe", "--env-file", str(env), "--out"]
    try:
        refused = await asyncio.create_subprocess_exec(
            sys.executable, *args, str(tmp_path / "no"), stdin=PIPE, stdout=PIPE, env=clean
        )
        said, _ = await refused.communicate(b"n\n")
        assert refused.returncode == 3 and not (tmp_path / "no").exists()
        assert b"look up a correlation id that cannot exist" in said
        far = round(sim.price("NSE_EQ", "2885") * 0.9, 1)
        agreed = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            str(tmp_path / "out"),
            "--with-order",
            f"NSE_EQ:2885:{far}",
            stdin=PIPE,
            stdout=PIPE,
            env=clean,
        )
        said, _ = await agreed.communicate(b"y\n")
    finally:
        await sim.stop()
    assert agreed.returncode == 0, said.decode()
    assert b"PLACE one LIMIT BUY of quantity 1" in said
    assert load_profile(str(tmp_path / "out" / "probe-profile.json")) == load_profile("live")
    written = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "out").iterdir())
    assert TOKEN not in written and CLIENT not in written
