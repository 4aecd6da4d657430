"""The state a fleet of servers shares about its calls: single-use claims, call records,
what each instance publishes. It owns the store interface and its two implementations
(this process, or Redis). May import: nothing of the bridge."""

from .fallback import FallbackStore
from .memory_store import MemoryStore
from .store import Claim, StateStore, StoreUnavailable

__all__ = ["Claim", "FallbackStore", "MemoryStore", "StateStore", "StoreUnavailable"]
