"""Public names of a subpackage resolved on first use (PEP 562), so that importing a
subpackage loads only what the caller touches."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, module_of: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: ``module_of`` maps each public name
    to the module (absolute, or relative to ``package`` when it starts with ``_``) defining it."""
    namespace = sys.modules[package].__dict__

    def getattr_(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if module.startswith("_"):
            module = f"{package}.{module}"
        __import__(module)  # not importlib.import_module: -X importtime shows what this loads
        value = getattr(sys.modules[module], name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *namespace["__all__"]})

    return getattr_, dir_
