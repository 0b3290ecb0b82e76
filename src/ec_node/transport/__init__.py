"""Node-to-node transport: peer addresses, TLS identity, and the pub/sub interface.

Publish/subscribe code depends on :mod:`ec_node.transport.base` (Protocols) and the pure modules
re-exported here; the moq-rs implementation lives in :mod:`ec_node.transport.moq_transport`
(imported explicitly, since it loads a 34 MB native library).
"""

from ec_node.transport.addr import EndpointAddr, parse_endpoint_addr
from ec_node.transport.base import (
    GroupEvent,
    Listener,
    NotFoundError,
    PeerLostError,
    PeerSession,
    Subscription,
    TrackWriter,
    Transport,
)
from ec_node.transport.identity import NodeIdentity, load_or_create_identity

__all__ = [
    "EndpointAddr",
    "GroupEvent",
    "Listener",
    "NodeIdentity",
    "NotFoundError",
    "PeerLostError",
    "PeerSession",
    "Subscription",
    "TrackWriter",
    "Transport",
    "load_or_create_identity",
    "parse_endpoint_addr",
]
