"""The allocator: LP weights priced by the economics core, and the hindsight oracle."""

from models.allocation.allocate import Allocation, allocate
from models.allocation.config import DEFAULT_CAPITAL_USD, DEFAULT_MIN_TRADE_USD, AllocatorConfig
from models.allocation.inputs import AllocationError

__all__ = ["Allocation", "AllocationError", "AllocatorConfig", "DEFAULT_CAPITAL_USD",
           "DEFAULT_MIN_TRADE_USD", "allocate"]
