"""Registries name their entries as `module:Name` and import them only when one is used, so listing or
validating names never pulls in torch-heavy code."""

from __future__ import annotations

import importlib
from typing import Any


def load_object(target: str) -> Any:
    """The object `Name` of `module` for the reference "module:Name"."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
