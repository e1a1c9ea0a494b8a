"""Warehouse adapters behind one interface (see base.py)."""

from shared.warehouse.base import Params, Warehouse

__all__ = ["Params", "Warehouse"]
