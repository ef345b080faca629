"""Errors of the protocol layer both sides share.

:class:`ConfigurationError` names a run setting that is unknown or out of range;
:class:`ProvisioningError` a kit (manifest, keys, certificates) that is
incomplete, inconsistent or not this federation's. Both derive from
:class:`ProtocolError`, so a caller can catch the layer's errors at one place.
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "ProtocolError", "ProvisioningError"]


class ProtocolError(Exception):
    """Base class of every error raised by :mod:`crossfed.protocol`."""


class ConfigurationError(ProtocolError):
    """A run setting is unknown, mistyped or out of range (the key is named)."""


class ProvisioningError(ProtocolError):
    """A kit, key or certificate could not be made, written, loaded or matched."""
