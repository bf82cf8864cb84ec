"""``lean_dataclass`` behaves as ``dataclass``: every shape the package uses, side by side."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from dataclasses import dataclass, field
from typing import Any

import pytest

from resilient_aws._dataclass import lean_dataclass


def _pair(**params: Any) -> tuple[type, type]:
    """The same class body made by ``dataclass`` and by ``lean_dataclass``."""

    def body() -> type:
        class Shape:
            name: str
            size: int = 1
            tags: list[str] = field(default_factory=list)
            secret: str = field(default="", repr=False)
            cached: int = field(default=0, compare=False)
            derived: int = field(init=False, default=-1)

            def __post_init__(self) -> None:
                object.__setattr__(self, "derived", self.size * 2)

        return Shape

    return dataclass(**params)(body()), lean_dataclass(**params)(body())


PARAMS = [{}, {"frozen": True}, {"kw_only": True}, {"frozen": True, "kw_only": True}]
PARAMS += [{"eq": False}, {"repr": False}, {"frozen": True, "eq": False}]


def _outcome(make: Any) -> Any:
    try:
        return ("ok", make())
    except Exception as exc:  # the kind of error is what is compared
        return ("raised", type(exc))


CALLS = [
    ((), {}),
    (("a",), {}),
    ((), {"name": "a"}),
    (("a", 3), {}),
    (("a", 3, ["x"]), {"secret": "s", "cached": 9}),
    (("a",), {"name": "b"}),
    ((), {"name": "a", "nope": 1}),
    ((), {"name": "a", "derived": 4}),
    (("a", 1, [], "s", 2, 3), {}),
]


@pytest.mark.parametrize("params", PARAMS, ids=str)
@pytest.mark.parametrize(("args", "kwargs"), CALLS, ids=str)
def test_construction_matches(
    params: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    theirs, ours = _pair(**params)
    expected = _outcome(lambda: theirs(*args, **kwargs))
    got = _outcome(lambda: ours(*args, **kwargs))
    assert got[0] == expected[0], (expected, got)
    if expected[0] == "raised":
        assert got[1] is expected[1]
        return
    a, b = expected[1], got[1]
    assert dataclasses.asdict(a) == dataclasses.asdict(b)
    if params.get("repr", True):
        assert repr(a) == repr(b)
    assert [f.name for f in dataclasses.fields(a)] == [f.name for f in dataclasses.fields(b)]


@pytest.mark.parametrize("params", PARAMS, ids=str)
def test_equality_hash_and_frozenness_match(params: dict[str, Any]) -> None:
    theirs, ours = _pair(**params)
    for cls in (theirs, ours):
        one, same, other = (
            cls(name="a", cached=1),
            cls(name="a", cached=2),
            cls(name="b"),
        )
        label = "ours" if cls is ours else "theirs"
        results = (one == same, one == other, one == "a", cls.__hash__ is None)
        if cls is theirs:
            expected = results
        else:
            assert results == expected, label
        if params.get("frozen"):
            with pytest.raises(dataclasses.FrozenInstanceError):
                one.size = 5
            with pytest.raises(dataclasses.FrozenInstanceError):
                del one.size
            if params.get("eq", True):
                # a list in a hashed field: unhashable, as with dataclasses
                assert _outcome(lambda c=cls: hash(c(name="a"))) == ("raised", TypeError)
                assert hash(cls(name="a", tags=(), cached=1)) == hash(cls(name="a", tags=()))
        else:
            one.size = 5
            assert one.size == 5


@lean_dataclass(frozen=True, kw_only=True)
class Picklable:
    name: str
    size: int = 1
    tags: list[str] = field(default_factory=list)
    derived: int = field(init=False, default=-1)

    def __post_init__(self) -> None:
        object.__setattr__(self, "derived", self.size * 2)


def test_replace_copy_and_pickle_work() -> None:
    one = Picklable(name="a", size=2, tags=["t"])
    two = dataclasses.replace(one, size=3)
    assert dataclasses.is_dataclass(one)
    assert (two.name, two.size, two.tags, two.derived) == ("a", 3, ["t"], 6)
    assert copy.deepcopy(one) == one
    assert pickle.loads(pickle.dumps(one)) == one


def test_default_factories_are_called_per_instance() -> None:
    _, ours = _pair()
    one, two = ours("a"), ours("b")
    one.tags.append("x")
    assert two.tags == []


def test_an_instance_holding_itself_has_a_finite_repr() -> None:
    @lean_dataclass
    class Node:
        child: Any = None

    node = Node()
    node.child = node
    assert (
        repr(node) == "test_an_instance_holding_itself_has_a_finite_repr.<locals>.Node(child=...)"
    )


def test_a_class_own_methods_are_kept() -> None:
    @lean_dataclass(frozen=True)
    class Own:
        value: int = 0

        def __repr__(self) -> str:
            return "own"

        def __hash__(self) -> int:
            return 7

    assert repr(Own(1)) == "own"
    assert hash(Own(1)) == 7


def test_a_subclass_inherits_the_fields() -> None:
    @lean_dataclass
    class Base:
        value: int = 0

    @lean_dataclass
    class Child(Base):
        more: int = 1

    assert repr(Child(2, 3)).endswith("Child(value=2, more=3)")
    assert Child(2) == Child(2, 1) != Base(2)
    assert [f.name for f in dataclasses.fields(Child)] == ["value", "more"]


def test_unsupported_shapes_are_refused() -> None:
    with pytest.raises(TypeError, match="InitVar"):

        @lean_dataclass
        class WithInitVar:
            seed: dataclasses.InitVar[int] = 0

    with pytest.raises(TypeError, match="follows default"):

        @lean_dataclass
        class Order:
            first: int = 0
            second: int  # type: ignore[misc]

    with pytest.raises(ValueError, match="mutable default"):

        @lean_dataclass
        class Mutable:
            items: list[int] = []  # type: ignore[assignment]  # noqa: RUF012


def test_an_undocumented_class_is_named_by_its_fields() -> None:
    @lean_dataclass
    class Bare:
        value: int
        other: str = ""

    assert Bare.__doc__ == "Bare(value, other)"


def test_init_is_compiled_by_the_first_instance_with_the_dataclass_signature() -> None:
    import inspect

    theirs, ours = _pair(kw_only=True)
    stand_in = ours.__dict__["__init__"]
    ours(name="a")
    assert ours.__dict__["__init__"] is not stand_in  # compiled once, then used directly
    assert str(inspect.signature(ours)) == str(inspect.signature(theirs))
