"""Everything that knows Dhan: its wire dialects, its SDK, its order-update socket.

- ``codec``: socket (``order_alert``) and REST order objects -> ``OrderSnapshot``; our
  ``OrderParams`` -> the ``dhanhq`` SDK's keyword arguments.
- ``errors``: the SDK's ``{status, remarks, data}`` dicts -> typed ``BrokerResult``.
- ``broker``: ``DhanBroker``, the async face over the synchronous SDK (one per account).
- ``order_stream``: ``OrderStream``, our own order-update WebSocket reader.
- ``recorder``: the ``Recorder`` hook and ``JsonlRecorder`` (``copytrade run --record DIR``).
- ``scrip_master``: Dhan's published instrument master (download, last good copy, parsing).

Nothing is imported here, so ``engine.dhan.codec`` stays cheap to import (the SDK is only
loaded by ``engine.dhan.broker``). Our correlationId scheme lives in
``engine.replication.correlation``: the replicator derives it, and it does no I/O.
"""
