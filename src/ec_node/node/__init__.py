"""The node core: every decision a subscriber or a relay makes, pure (no I/O, no clock).

``events`` (inputs, actions, reports), ``settings`` (one type, role differences named), ``ledger``
(who lied), ``reorder`` (the one reorder stage), ``links`` (liveness on the chunk clock) and
``core`` (the machine). The asyncio shells that drive it live in :mod:`ec_node.pipeline`.
"""
