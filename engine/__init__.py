"""The key-value engine: one interface, four interchangeable backends.

Importing this package imports no backend: ``open_store`` loads the chosen one on demand.
"""

from engine import errors
from engine.base import MAX_KEY_SIZE, Store, Transaction
from engine.registry import PROVIDERS, open_store, open_store_from_env

__all__ = [
    "MAX_KEY_SIZE",
    "PROVIDERS",
    "Store",
    "Transaction",
    "errors",
    "open_store",
    "open_store_from_env",
]
