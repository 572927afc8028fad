"""``copytrade run --record DIR``: the brokers built with the recorder, so every REST exchange
of every account is written (redacted) beside the socket frames the streams record."""

from __future__ import annotations

from engine.config import Settings
from engine.dhan.broker import DhanBroker
from engine.dhan.recorder import Recorder
from engine.live.accounts import Broker, BrokerFactory, source_ips


def recording_broker_factory(recorder: Recorder, settings: Settings) -> BrokerFactory:
    """As the default factory (each account from its source_ip), with the recorder."""
    ips = source_ips(settings)

    def factory(
        account: str, client_id: str, token: str, rest_url: str, timeout_s: float
    ) -> Broker:
        return DhanBroker(
            client_id,
            token,
            rest_url,
            timeout_s=timeout_s,
            account=account,
            source_ip=ips.get(account),
            recorder=recorder,
        )

    return factory
