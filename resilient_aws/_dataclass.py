"""``lean_dataclass``: a dataclass without the compile at import time.

``dataclasses.dataclass`` writes every method it generates (``__init__``, ``__repr__``,
``__eq__``, ``__hash__``, a frozen class's ``__setattr__``/``__delattr__``) as source text and
compiles it with ``exec`` when the class is created: 0.2-0.4 ms per class on Python 3.11, about
half of what importing the outbox or the redrive cost a Lambda cold start. Bytecode caching does
not help, the text is compiled again at every import.

``lean_dataclass`` lets :mod:`dataclasses` do the field analysis (so ``dataclasses.fields``,
``replace``, ``asdict`` and ``is_dataclass`` work as on any dataclass) but asks it to generate
nothing. ``__repr__``, ``__eq__``, ``__hash__`` and a frozen class's ``__setattr__`` and
``__delattr__`` are closures over the field list: nothing to compile. ``__init__`` is compiled
when the first instance is made (one small function instead of six, and only for the classes a
run uses), so instances are built as fast as a dataclass's. They behave as the generated ones
(same arguments, errors, repr, equality, hash and frozenness; ``tests/unit/test_lean_dataclass.py``
compares them side by side). Not supported (refused): ``InitVar`` fields, ``order=True``,
``slots=True``.

Type checkers see :func:`dataclasses.dataclass` itself.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

__all__ = ["lean_dataclass"]

T = TypeVar("T")

_MISSING: Any = dataclasses.MISSING


class _Factory:
    """The default of a parameter whose field has a default_factory (shown as dataclasses do)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY: Any = _Factory()

if TYPE_CHECKING:
    from dataclasses import dataclass as lean_dataclass
else:

    def lean_dataclass(
        cls: type[T] | None = None,
        /,
        *,
        frozen: bool = False,
        kw_only: bool = False,
        eq: bool = True,
        repr: bool = True,  # the keyword dataclasses uses
    ) -> Any:
        """``@lean_dataclass``, ``@lean_dataclass(frozen=True, kw_only=True, eq=False, repr=False)``: as
        ``@dataclass`` with the same keywords."""

        def wrap(cls: type[T]) -> type[T]:
            return _make(cls, frozen=frozen, kw_only=kw_only, eq=eq, repr_=repr)

        return wrap if cls is None else wrap(cls)


def _make(cls: type[T], *, frozen: bool, kw_only: bool, eq: bool, repr_: bool) -> type[T]:
    # Field analysis only: no method is generated, so nothing is compiled. A class without a
    # docstring would get one from inspect.signature, which tokenizes (over 1 ms): named here.
    undocumented = not cls.__doc__
    if undocumented:
        cls.__doc__ = cls.__name__
    dataclasses.dataclass(cls, init=False, repr=False, eq=False, kw_only=kw_only)
    every = dataclasses.fields(cls)  # type: ignore[arg-type]
    if undocumented:
        cls.__doc__ = f"{cls.__name__}({', '.join(f.name for f in every if f.init)})"
    if len(every) != len(cls.__dataclass_fields__):  # type: ignore[attr-defined]
        raise TypeError(f"lean_dataclass {cls.__qualname__}: InitVar fields are not supported")
    init_fields = [f for f in every if f.init]
    seen_default = False
    for f in init_fields:
        if f.kw_only:
            continue
        has_default = f.default is not _MISSING or f.default_factory is not _MISSING
        if seen_default and not has_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument")
        seen_default = seen_default or has_default
    _set(cls, "__init__", _init(cls, every, frozen))
    if repr_:
        _set(cls, "__repr__", _repr(tuple(f.name for f in every if f.repr)))
    if eq:
        compared = tuple(f.name for f in every if f.compare)
        _set(cls, "__eq__", _eq(compared))
        explicit_hash = cls.__dict__.get("__hash__") is not None
        if frozen and not explicit_hash:
            hashed = tuple(f.name for f in every if (f.compare if f.hash is None else f.hash))
            _set(cls, "__hash__", _hash(hashed), replace=True)
        elif not explicit_hash:
            cls.__hash__ = None  # type: ignore[assignment]  # as dataclasses: eq, not frozen
    if frozen:
        names = frozenset(f.name for f in every)
        _set(cls, "__setattr__", _frozen_setattr(cls, names))
        _set(cls, "__delattr__", _frozen_delattr(cls, names))
    return cls


def _set(cls: type, name: str, method: Callable[..., Any], *, replace: bool = False) -> None:
    if name in cls.__dict__ and not replace:
        if name in ("__setattr__", "__delattr__"):
            raise TypeError(f"Cannot overwrite attribute {name} in class {cls.__name__}")
        return  # the class defines its own, as dataclasses leaves it
    method.__qualname__ = f"{cls.__qualname__}.{name}"
    setattr(cls, name, method)


def _init(cls: Any, every: tuple[dataclasses.Field[Any], ...], frozen: bool) -> Callable[..., None]:
    """A stand-in ``__init__`` that compiles the real one on the first instance, then hands
    over: only classes that are used pay for a compile, once, and every instance after is
    built at a dataclass's speed."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        compiled = _compile_init(cls, every, frozen)
        if cls.__dict__.get("__init__") is __init__:  # two threads may both compile: harmless
            cls.__init__ = compiled
        compiled(self, *args, **kwargs)

    return __init__


def _compile_init(
    cls: Any, every: tuple[dataclasses.Field[Any], ...], frozen: bool
) -> Callable[..., None]:
    namespace: dict[str, Any] = {
        "__lean_setattr__": object.__setattr__,
        "__lean_factory__": _FACTORY,
    }
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for i, f in enumerate(every):
        name = f.name
        if f.default is not _MISSING:
            namespace[f"__lean_default_{i}__"] = f.default
        elif f.default_factory is not _MISSING:
            namespace[f"__lean_factory_{i}__"] = f.default_factory
        if f.init:
            if f.default is not _MISSING:
                parameter, value = f"{name}=__lean_default_{i}__", name
            elif f.default_factory is not _MISSING:
                parameter = f"{name}=__lean_factory__"
                value = f"__lean_factory_{i}__() if {name} is __lean_factory__ else {name}"
            else:
                parameter, value = name, name
            (keyword if f.kw_only else positional).append(parameter)
        elif f.default is not _MISSING:
            value = f"__lean_default_{i}__"
        elif f.default_factory is not _MISSING:
            value = f"__lean_factory_{i}__()"
        else:
            continue  # init=False without a default: left unset, as dataclasses does
        if frozen:
            body.append(f"__lean_setattr__(__lean_self__, {name!r}, {value})")
        else:
            body.append(f"__lean_self__.{name} = {value}")
    if getattr(cls, "__post_init__", None) is not None:
        body.append("__lean_self__.__post_init__()")
    parameters = ", ".join(["__lean_self__", *positional, *(["*", *keyword] if keyword else [])])
    source = f"def __init__({parameters}):\n    " + "\n    ".join(body or ["pass"])
    exec(source, namespace)  # built from field names only, as dataclasses does
    init: Callable[..., None] = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = {f.name: f.type for f in every if f.init} | {"return": None}
    return init


def _repr(names: tuple[str, ...]) -> Callable[[Any], str]:
    active: set[tuple[int, int]] = set()

    def __repr__(self: Any) -> str:  # noqa: N807
        key = (id(self), threading.get_ident())
        if key in active:
            return "..."  # an instance that holds itself, as dataclasses' recursive repr
        active.add(key)
        try:
            inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        finally:
            active.discard(key)
        return f"{type(self).__qualname__}({inner})"

    return __repr__


def _eq(names: tuple[str, ...]) -> Callable[[Any, Any], Any]:
    def __eq__(self: Any, other: Any) -> Any:  # noqa: N807
        if other.__class__ is not self.__class__:
            return NotImplemented
        return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)

    return __eq__


def _hash(names: tuple[str, ...]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:  # noqa: N807
        return hash(tuple(getattr(self, n) for n in names))

    return __hash__


def _frozen_setattr(cls: Any, names: frozenset[str]) -> Callable[[Any, str, Any], None]:
    def __setattr__(self: Any, name: str, value: Any) -> None:  # noqa: N807
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    return __setattr__


def _frozen_delattr(cls: Any, names: frozenset[str]) -> Callable[[Any, str], None]:
    def __delattr__(self: Any, name: str) -> None:  # noqa: N807
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    return __delattr__
