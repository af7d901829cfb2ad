"""Names a package's face hands on without importing them until first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`'s face: `where[name]`, a submodule, is imported
    when `name` is first asked for. The cloud engines import boto3, prefect-aws and sqlglot
    (half a second of every start); a local run never asks for them."""

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
