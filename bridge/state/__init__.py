"""The state a fleet of servers shares about its calls: single-use claims, call records,
what each instance publishes. It owns the store interface and its two implementations
(this process, or Redis); it imports nothing else of the bridge."""

from .fallback import FallbackStore
from .memory_store import MemoryStore
from .store import StateStore, StoreUnavailable

__all__ = ["FallbackStore", "MemoryStore", "StateStore", "StoreUnavailable"]
