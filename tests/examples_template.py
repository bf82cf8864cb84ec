"""examples/template.yaml read as data: CloudFormation's short tags, its functions and resources.

Shared by tests/unit/test_examples_infra.py (the template against the examples' source) and
tests/functional/test_examples_iam.py (the template's policies against the calls the handlers
make under moto).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TEMPLATE = EXAMPLES / "template.yaml"


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (``!Ref``, ``!GetAtt``, ``!Sub``...) read as their
    long form (``{"Ref": ...}``, ``{"Fn::GetAtt": [resource, attribute]}``...)."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def load_template(text: str) -> dict[str, Any]:
    loaded = yaml.load(text, Loader=_CloudFormationLoader)  # a SafeLoader, plus the tags
    assert isinstance(loaded, dict)
    return loaded


@functools.cache
def template() -> dict[str, Any]:
    return load_template(TEMPLATE.read_text())


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource.get("Properties", {})
        for name, resource in template()["Resources"].items()
        if resource["Type"] == kind
    }


def functions() -> dict[str, dict[str, Any]]:
    """Each function's properties with the template's ``Globals`` applied."""
    defaults = template().get("Globals", {}).get("Function", {})
    return {
        name: {**defaults, **props}
        for name, props in resources("AWS::Serverless::Function").items()
    }


def referenced(value: Any) -> str | None:
    """The resource an intrinsic names: ``!Ref X``, ``!GetAtt X.Attr``."""
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
    return None


def variables_of(function: dict[str, Any]) -> dict[str, Any]:
    return dict((function.get("Environment") or {}).get("Variables") or {})


def handler_module(function: dict[str, Any]) -> tuple[str, str]:
    module, _, name = function["Handler"].rpartition(".")
    return module, name


def table_of_variable(variable: str) -> str:
    """The template table a variable names (the same in every function that sets it)."""
    names = {
        referenced(variables_of(f)[variable])
        for f in functions().values()
        if variable in variables_of(f)
    }
    assert len(names) == 1, f"{variable} names {names or 'nothing'} in the template"
    return str(names.pop())
