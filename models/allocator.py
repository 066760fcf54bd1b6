"""Compatibility import path of the allocator (the code lives in `models.allocation`)."""

from models.allocation import Allocation, AllocationError, AllocatorConfig, allocate

__all__ = ["Allocation", "AllocationError", "AllocatorConfig", "allocate"]
