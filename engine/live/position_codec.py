"""Position ledgers and attach points as the text the store keeps (engine.store.positions):
JSON written and read here only, so a stored day reads back the same after a restart."""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from engine.config import FollowerSettings
from engine.domain import Product, Segment, Side
from engine.live.position_records import AttachPoint, SyncOrder
from engine.replication.rules import OrderSizeBounds, SizingRule
from engine.replication.targets import Leg, PositionKey, PositionLedger, SizingTerms
from engine.store import format_datetime, parse_datetime
from engine.store.positions import AttachRow

_RULE = TypeAdapter[Any](SizingRule)


def sizing_text(fs: FollowerSettings) -> str:
    return json.dumps(
        {"sizing": fs.sizing.model_dump(), "bounds": fs.bounds.model_dump()}, sort_keys=True
    )


def attach_row(
    name: str, attach: AttachPoint, enabled: bool, sizing: str, syncs: list[SyncOrder]
) -> AttachRow:
    net = [
        [k.segment.value, k.security_id, k.product.value, n] for k, n in attach.leader_net.items()
    ]
    synced = [
        [
            x.order_id,
            x.key.segment.value,
            x.key.security_id,
            x.key.product.value,
            x.adopted,
            x.side.value,
        ]
        for x in syncs
    ]
    body = json.dumps(
        {
            "net": net,
            "derived": attach.derived,
            "refused": sorted(attach.refused),
            "syncs": synced,
        }
    )
    return AttachRow(name, format_datetime(attach.at), enabled, sizing, body)


def attach_from(row: AttachRow) -> AttachPoint:
    body = json.loads(row.leader_positions)
    net = {
        PositionKey(Segment(seg), sec, Product(prod)): int(n) for seg, sec, prod, n in body["net"]
    }
    return AttachPoint(
        parse_datetime(row.attached_at),
        net,
        bool(body.get("derived")),
        {str(i) for i in body.get("refused", ())},
    )


def syncs_from(row: AttachRow) -> list[SyncOrder]:
    body = json.loads(row.leader_positions)
    return [
        SyncOrder(
            str(oid),
            row.follower,
            PositionKey(Segment(seg), sec, Product(prod)),
            int(n),
            Side(side),
        )
        for oid, seg, sec, prod, n, side in body.get("syncs", ())
    ]


def ledger_to_json(ledger: PositionLedger) -> str:
    return json.dumps(
        {
            "leader_at_attach": ledger.leader_at_attach,
            "target_at_attach": ledger.target_at_attach,
            "follower_at_attach": ledger.follower_at_attach,
            "legs": [_leg_json(leg) for leg in ledger.legs],
            "fills": [[order_id, qty] for order_id, qty in ledger.fills],
        }
    )


def _leg_json(leg: Leg) -> dict[str, Any]:
    t = leg.terms
    return {
        "id": leg.leader_order_id,
        "side": leg.side.value,
        "rule": t.rule.model_dump(),
        "bounds": t.bounds.model_dump(),
        "lot": t.lot_size,
        "capital_ratio": t.capital_ratio,
        "qty": leg.leader_qty,
        "filled": leg.leader_filled,
        "open": leg.leader_open,
        "baseline": leg.baseline_filled,
        "copy_filled": leg.copy_filled,
        "copy_working": leg.copy_working,
    }


def ledger_from_json(key: PositionKey, text: str) -> PositionLedger:
    body = json.loads(text)
    legs = tuple(
        Leg(
            leader_order_id=x["id"],
            side=Side(x["side"]),
            terms=SizingTerms(
                rule=_RULE.validate_python(x["rule"]),
                bounds=OrderSizeBounds.model_validate(x["bounds"]),
                lot_size=int(x["lot"]),
                capital_ratio=x["capital_ratio"],
            ),
            leader_qty=int(x["qty"]),
            leader_filled=int(x["filled"]),
            leader_open=bool(x["open"]),
            baseline_filled=int(x["baseline"]),
            copy_filled=int(x["copy_filled"]),
            copy_working=int(x["copy_working"]),
        )
        for x in body["legs"]
    )
    return PositionLedger(
        key=key,
        leader_at_attach=int(body["leader_at_attach"]),
        target_at_attach=int(body["target_at_attach"]),
        follower_at_attach=int(body["follower_at_attach"]),
        legs=legs,
        fills=tuple((str(i), int(q)) for i, q in body["fills"]),
    )
