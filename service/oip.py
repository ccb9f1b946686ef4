"""protocol adapter: rewired at merge. `service.fastpath.protocol` imports OCTET from here; the
Open Inference Protocol's wire codec is `service.protocols.v2.wire`."""

from service.protocols.v2.wire import OCTET

__all__ = ["OCTET"]
