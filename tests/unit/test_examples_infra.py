"""examples/template.yaml against the examples it deploys, so that neither drifts from the other.

Every function's handler is a function of an example module, and every example handler is
deployed; each function's environment holds exactly the variables its module reads and points
them at resources of the right type; the tables the examples create locally are the template's
tables (keys, indexes, stream, TTL), and those fit what the library expects (the outbox layout,
the idempotency records); queues have DLQs, event sources report partial batch failures, and IAM
policies name the resources they grant. Static: the template is read as YAML, the examples as
source (``ast``); only the modules whose demo sits behind ``if __name__ == "__main__"`` are
imported, to call their table-creating functions on a recording client.
"""

from __future__ import annotations

import ast
import functools
import importlib
import json
import re
import sys
from typing import Any

import pytest

from tests.examples_template import (
    EXAMPLES,
    ROOT,
    TEMPLATE,
    functions,
    handler_module,
    load_template,
    referenced,
    resources,
    table_of_variable,
    template,
    variables_of,
)

# Example modules with a Lambda-style ``handler`` that the template does not deploy, and why.
NOT_DEPLOYED = {
    "powertools_metrics": "a local demo of the metrics listener: it imports moto and has no client",
}

# Variables the Lambda runtime sets itself.
LAMBDA_VARIABLES = {
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_EXECUTION_ENV",
    "LAMBDA_TASK_ROOT",
}

SAM_POLICY_TEMPLATES = {
    "DynamoDBCrudPolicy": "TableName",
    "DynamoDBReadPolicy": "TableName",
    "DynamoDBWritePolicy": "TableName",
    "SQSSendMessagePolicy": "QueueName",
    "SQSPollerPolicy": "QueueName",
    "LambdaInvokePolicy": "FunctionName",
}


# -- reading the examples ---------------------------------------------------------------------


@functools.cache
def source(module: str) -> str:
    return (EXAMPLES / f"{module}.py").read_text()


@functools.cache
def tree(module: str) -> ast.Module:
    return ast.parse(source(module))


def _is_main_guard(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
    )


def top_level(module: str) -> list[ast.stmt]:
    """The module's statements that run on import (not its ``__main__`` block)."""
    return [node for node in tree(module).body if not _is_main_guard(node)]


def has_main_guard(module: str) -> bool:
    return any(_is_main_guard(node) for node in tree(module).body)


def environment_reads(module: str) -> dict[str, str | None]:
    """``{variable: default}`` for every ``os.environ[...]``, ``os.environ.get(...)`` and
    ``os.getenv(...)`` read outside the ``__main__`` block."""
    reads: dict[str, str | None] = {}
    for statement in top_level(module):
        for node in ast.walk(statement):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and (
                    (node.func.attr == "get" and ast.unparse(node.func.value) == "os.environ")
                    or ast.unparse(node.func) == "os.getenv"
                )
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                default = node.args[1] if len(node.args) > 1 else None
                reads[str(node.args[0].value)] = (
                    str(default.value) if isinstance(default, ast.Constant) else None
                )
            elif (
                isinstance(node, ast.Subscript)
                and isinstance(node.ctx, ast.Load)
                and ast.unparse(node.value) == "os.environ"
                and isinstance(node.slice, ast.Constant)
            ):
                reads.setdefault(str(node.slice.value), None)
    return reads


def defines(module: str, name: str) -> ast.FunctionDef | ast.Assign | None:
    for node in top_level(module):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return node
    return None


def imported_from(module: str, package: str) -> set[str]:
    """The names ``module`` imports from ``package`` outside its ``__main__`` block."""
    return {
        alias.name
        for statement in top_level(module)
        for node in ast.walk(statement)
        if isinstance(node, ast.ImportFrom) and node.module == package
        for alias in node.names
    }


def builds_partial_batch_response(module: str) -> bool:
    """The module writes ``{"batchItemFailures": ...}`` itself (in code, not in a docstring)."""
    return any(
        isinstance(node, ast.Dict)
        and any(isinstance(k, ast.Constant) and k.value == "batchItemFailures" for k in node.keys)
        for statement in top_level(module)
        for node in ast.walk(statement)
    )


def passes_keyword(module: str, call: str, keyword: str) -> list[Any]:
    """The values of ``keyword=`` in every call of ``call(...)`` outside the ``__main__`` block."""
    return [
        kw.value
        for statement in top_level(module)
        for node in ast.walk(statement)
        if isinstance(node, ast.Call) and ast.unparse(node.func) == call
        for kw in node.keywords
        if kw.arg == keyword
    ]


# What answers a partial batch response through the library.
CONSUMER_API = {"BatchProcessor", "process_partial_response"}


def example_modules() -> list[str]:
    return sorted(p.stem for p in EXAMPLES.glob("*.py") if not p.name.startswith(("test_", "_")))


def events(kind: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """``(function name, function, event properties)`` for each event source of ``kind``."""
    return [
        (name, function, event.get("Properties", {}))
        for name, function in functions().items()
        for event in function.get("Events", {}).values()
        if event["Type"] == kind
    ]


FUNCTIONS = sorted(functions())


# -- the loader itself ----------------------------------------------------------------------------


def test_the_loader_reads_short_tags_as_their_long_form() -> None:
    loaded = load_template(
        "a: !Ref T\nb: !GetAtt T.Arn\nc: !Sub 'x-${AWS::Region}'\nd: !Join [',', [a, b]]\n"
        "e: !Select [0, !GetAZs '']\nf: !If [c, {x: 1}, !Ref AWS::NoValue]\n"
    )
    assert loaded == {
        "a": {"Ref": "T"},
        "b": {"Fn::GetAtt": ["T", "Arn"]},
        "c": {"Fn::Sub": "x-${AWS::Region}"},
        "d": {"Fn::Join": [",", ["a", "b"]]},
        "e": {"Fn::Select": [0, {"Fn::GetAZs": ""}]},
        "f": {"Fn::If": ["c", {"x": 1}, {"Ref": "AWS::NoValue"}]},
    }


# -- functions and handlers -----------------------------------------------------------------------


def test_the_template_is_sam_with_python_312_and_the_code_of_this_directory() -> None:
    assert template()["Transform"] == "AWS::Serverless-2016-10-31"
    assert FUNCTIONS
    for name, function in functions().items():
        assert function["Runtime"] == "python3.12", name
        assert (TEMPLATE.parent / function["CodeUri"]).resolve() == EXAMPLES, name
    requirements = (EXAMPLES / "requirements.txt").read_text().split()
    assert any(line.startswith("resilient-aws[lambda]") for line in requirements)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_handler_is_a_function_of_an_example(name: str) -> None:
    module, attribute = handler_module(functions()[name])
    assert (EXAMPLES / f"{module}.py").is_file(), f"{name}: no examples/{module}.py"
    found = defines(module, attribute)
    assert isinstance(found, ast.FunctionDef), f"{name}: {module}.py defines no {attribute}()"
    positional = found.args.posonlyargs + found.args.args
    assert len(positional) >= 2, f"{name}: {attribute} must take (event, context)"
    assert "import moto" not in source(module).split("__main__")[0], (
        f"{name}: {module} imports moto outside its __main__ block"
    )


def test_every_example_handler_is_deployed() -> None:
    deployed = {handler_module(f)[0] for f in functions().values()}
    with_handler = {m for m in example_modules() if defines(m, "handler") is not None}
    assert with_handler - deployed - set(NOT_DEPLOYED) == set()
    assert set(NOT_DEPLOYED) <= with_handler  # no stale exemption


@pytest.mark.parametrize("name", FUNCTIONS)
def test_the_environment_is_what_the_handler_reads(name: str) -> None:
    function = functions()[name]
    variables = variables_of(function)
    reads = environment_reads(handler_module(function)[0])
    assert set(reads) - LAMBDA_VARIABLES <= set(variables), f"{name}: unset variables"
    assert set(variables) <= set(reads), f"{name}: variables its code never reads"
    kinds = {"_TABLE": "AWS::DynamoDB::Table", "_URL": "AWS::SQS::Queue"}
    for variable, value in variables.items():
        for suffix, kind in kinds.items():
            if variable.endswith(suffix):
                assert "Ref" in value, f"{name}: {variable} must be !Ref of a {kind}"
                assert value["Ref"] in resources(kind), f"{name}: {variable} is no {kind}"


# -- tables ---------------------------------------------------------------------------------------


def local_table_names() -> dict[str, str]:
    """Local (default) table name -> the template table, through the variables' defaults."""
    mapping: dict[str, str] = {}
    for module in {handler_module(f)[0] for f in functions().values()}:
        for variable, default in environment_reads(module).items():
            if variable.endswith("_TABLE") and default is not None:
                mapping[default] = table_of_variable(variable)
    return mapping


class RecordingDynamoDB:
    """Stands in for a DynamoDB client: remembers what the examples would create."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, Any]] = {}

    def create_table(self, **request: Any) -> dict[str, Any]:
        self.tables[request["TableName"]] = request
        return {"TableDescription": {"TableName": request["TableName"]}}

    def update_time_to_live(self, **request: Any) -> dict[str, Any]:
        self.tables[request["TableName"]]["TimeToLiveSpecification"] = dict(
            request["TimeToLiveSpecification"]
        )
        return {"TimeToLiveSpecification": request["TimeToLiveSpecification"]}


def table_creators() -> list[tuple[str, str]]:
    return [
        (module, node.name)
        for module in example_modules()
        for node in top_level(module)
        if isinstance(node, ast.FunctionDef) and re.fullmatch(r"create_\w*tables?", node.name)
    ]


def _shape(table: dict[str, Any]) -> dict[str, Any]:
    """What the code depends on: keys, attribute types, indexes (name, keys, projection)."""
    return {
        "keys": [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]],
        "attributes": sorted(
            (a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]
        ),
        "indexes": sorted(
            (
                index["IndexName"],
                tuple((k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]),
                index["Projection"]["ProjectionType"],
            )
            for index in table.get("GlobalSecondaryIndexes", [])
        ),
    }


def test_the_tables_the_examples_create_are_the_templates() -> None:
    creators = table_creators()
    assert creators
    mapping = local_table_names()
    tables = resources("AWS::DynamoDB::Table")
    sys.path.insert(0, str(EXAMPLES))
    try:
        for module_name, creator in creators:
            assert has_main_guard(module_name), f"{module_name} runs its demo when imported"
            client = RecordingDynamoDB()
            getattr(importlib.import_module(module_name), creator)(client)
            for local, created in client.tables.items():
                where = f"{module_name}.{creator} creates {local!r}"
                assert local in mapping, f"{where}: no function reads it from the environment"
                declared = tables[mapping[local]]
                assert _shape(created) == _shape(declared), where
                stream = created.get("StreamSpecification", {}).get("StreamViewType")
                if stream:
                    assert declared["StreamSpecification"]["StreamViewType"] == stream, where
                ttl = created.get("TimeToLiveSpecification", {}).get("AttributeName")
                if ttl:
                    assert declared["TimeToLiveSpecification"]["AttributeName"] == ttl, where
    finally:
        sys.path.remove(str(EXAMPLES))


def test_the_outbox_table_is_the_one_the_library_expects() -> None:
    from resilient_aws.outbox import Layout
    from resilient_aws.outbox._layout import A_PENDING, A_SEQUENCE

    layout = Layout()
    table = resources("AWS::DynamoDB::Table")[table_of_variable("ORDERS_TABLE")]
    assert _shape(table)["keys"] == [(layout.partition_key, "HASH"), (layout.sort_key, "RANGE")]
    assert (layout.pending_index, ((A_PENDING, "HASH"), (A_SEQUENCE, "RANGE")), "ALL") in _shape(
        table
    )["indexes"]
    assert {(A_PENDING, "S"), (A_SEQUENCE, "N"), (layout.sort_key, "S")} <= set(
        _shape(table)["attributes"]
    )
    assert table["StreamSpecification"]["StreamViewType"] in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")
    assert table["TimeToLiveSpecification"] == {
        "AttributeName": layout.ttl_attribute,
        "Enabled": True,
    }


def test_the_orders_table_is_the_one_in_the_outbox_docs() -> None:
    page = (ROOT / "docs" / "outbox.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", page, flags=re.DOTALL)
    documented = [load_template(block) for block in blocks if "OrdersTable:" in block]
    assert len(documented) == 1
    assert documented[0]["OrdersTable"] == template()["Resources"]["OrdersTable"]


def test_the_idempotency_table_is_the_one_the_library_expects() -> None:
    from resilient_aws.idempotency import IdempotencyStore

    store = IdempotencyStore("idempotency")  # no client is made until a call
    table = resources("AWS::DynamoDB::Table")[table_of_variable("IDEMPOTENCY_TABLE")]
    assert _shape(table)["keys"] == [(store.key_attr, "HASH")]
    assert _shape(table)["attributes"] == [(store.key_attr, "S")]
    assert table["TimeToLiveSpecification"] == {
        "AttributeName": store.expiry_attr,
        "Enabled": True,
    }


# -- queues and event sources ---------------------------------------------------------------------


def stream_events() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return events("DynamoDB") + events("Kinesis")


def test_every_queue_has_a_dlq_or_is_one() -> None:
    queues = resources("AWS::SQS::Queue")
    dlqs = {
        referenced(q["RedrivePolicy"]["deadLetterTargetArn"])
        for q in queues.values()
        if "RedrivePolicy" in q
    }
    destinations = {
        referenced(event["DestinationConfig"]["OnFailure"]["Destination"])
        for _, _, event in stream_events()
    }
    for name, queue in queues.items():
        if name in dlqs or name in destinations:
            # longer than the source queue's retention (4 days by default): time to redrive
            assert queue.get("MessageRetentionPeriod", 345_600) > 345_600, name
            assert "RedrivePolicy" not in queue, name
            if name in destinations:  # Lambda's on-failure destinations are standard queues
                assert not queue.get("FifoQueue"), name
        else:
            policy = queue.get("RedrivePolicy")
            assert policy, f"{name} has no DLQ"
            dlq = str(referenced(policy["deadLetterTargetArn"]))
            assert dlq in queues, name
            assert 1 <= int(policy["maxReceiveCount"]) <= 10, name
            # SQS refuses a DLQ of the other type
            assert bool(queues[dlq].get("FifoQueue")) == bool(queue.get("FifoQueue")), name
        if queue.get("FifoQueue") and "QueueName" in queue:  # a FIFO queue's name ends so
            queue_name = queue["QueueName"]
            if isinstance(queue_name, dict):
                queue_name = queue_name["Fn::Sub"]
            assert str(queue_name).endswith(".fifo"), name


def test_sqs_consumers_report_partial_batch_failures() -> None:
    consumers = events("SQS")
    assert consumers
    queues = resources("AWS::SQS::Queue")
    for name, function, event in consumers:
        module = handler_module(function)[0]
        assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"], name
        assert (
            builds_partial_batch_response(module)
            or imported_from(module, "resilient_aws.consumer") & CONSUMER_API
        ), f"{name}: {module} never answers batchItemFailures"
        queue = queues[str(referenced(event["Queue"]))]
        # AWS advises 6 x the function's timeout, so a retried batch is not received twice.
        assert int(queue["VisibilityTimeout"]) >= 6 * int(function["Timeout"]), name
        batch_size = int(event.get("BatchSize", 10))
        window = int(event.get("MaximumBatchingWindowInSeconds", 0))
        if queue.get("FifoQueue"):
            # Lambda: at most 10 messages a batch from a FIFO queue, and no batching window
            assert 1 <= batch_size <= 10, name
            assert "MaximumBatchingWindowInSeconds" not in event, name
        else:
            assert 1 <= batch_size <= 10_000, name
            assert batch_size <= 10 or window >= 1, f"{name}: over 10 needs a batching window"
        assert window <= 300, name


def test_visibility_backoff_may_change_the_visibility_of_its_queue() -> None:
    # SAM's SQS event source grants receive, delete and attributes (the managed
    # AWSLambdaSQSQueueExecutionRole), not ChangeMessageVisibility: the function must.
    backing_off = [
        (name, function, event)
        for name, function, event in events("SQS")
        if "VisibilityBackoff"
        in imported_from(handler_module(function)[0], "resilient_aws.consumer")
    ]
    assert backing_off
    for name, function, event in backing_off:
        queue = referenced(event["Queue"])
        granted = {
            (action, referenced(statement["Resource"]))
            for policy in function["Policies"]
            for statement in policy.get("Statement", [])
            for action in (
                [statement["Action"]]
                if isinstance(statement["Action"], str)
                else statement["Action"]
            )
        }
        assert ("sqs:ChangeMessageVisibility", queue) in granted, name


def test_stream_consumers_report_partial_failures_bisect_and_give_up_somewhere() -> None:
    consumers = stream_events()
    assert {"DynamoDB", "Kinesis"} <= {
        event["Type"]
        for function in functions().values()
        for event in function.get("Events", {}).values()
    }
    tables = resources("AWS::DynamoDB::Table")
    streams = resources("AWS::Kinesis::Stream")
    queues = resources("AWS::SQS::Queue")
    for name, function, event in consumers:
        source_name = str(referenced(event["Stream"]))
        if source_name in tables:
            assert event["Stream"]["Fn::GetAtt"][1] == "StreamArn", name
            assert "StreamSpecification" in tables[source_name], name
        else:
            assert source_name in streams, f"{name}: no Kinesis stream {source_name}"
            assert event["Stream"]["Fn::GetAtt"][1] == "Arn", name
        assert event["StartingPosition"] in ("TRIM_HORIZON", "LATEST"), name
        assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"], name
        assert event["BisectBatchOnFunctionError"] is True, name
        assert isinstance(event["MaximumRetryAttempts"], int), name
        assert 0 <= event["MaximumRetryAttempts"] <= 10_000, name
        assert 1 <= int(event.get("BatchSize", 100)) <= 10_000, name
        failure = event["DestinationConfig"]["OnFailure"]
        assert failure["Type"] == "SQS", name
        assert referenced(failure["Destination"]) in queues, name
        for criterion in event.get("FilterCriteria", {}).get("Filters", []):
            assert isinstance(json.loads(criterion["Pattern"]), dict), name
        # The answer keeps the shard's order: the outbox relay, or a BatchProcessor that stops
        # at the first failure (ordered=False would run the records after it).
        module = handler_module(function)[0]
        assert "relay_handler" in imported_from(module, "resilient_aws.outbox") or (
            imported_from(module, "resilient_aws.consumer") & CONSUMER_API
        ), f"{name}: {module} answers neither through relay_handler nor a BatchProcessor"
        for ordered in passes_keyword(module, "BatchProcessor", "ordered"):
            assert not (isinstance(ordered, ast.Constant) and ordered.value is False), name


def test_http_routes_are_the_ones_the_handlers_route() -> None:
    routes: dict[str, set[str]] = {}
    for _, function, event in events("HttpApi"):
        routes.setdefault(handler_module(function)[0], set()).add(
            f"{event['Method'].upper()} {event['Path']}"
        )
    assert routes
    for module, declared in routes.items():
        if "routeKey" in source(module):
            in_code = set(re.findall(r'"((?:GET|POST|PUT|PATCH|DELETE) /[^"]*)"', source(module)))
            assert declared == in_code, module


def test_schedules_are_valid_expressions() -> None:
    schedules = events("Schedule") + events("ScheduleV2")
    assert schedules
    for name, _, event in schedules:
        expression = event.get("Schedule") or event.get("ScheduleExpression")
        assert re.fullmatch(
            r"rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\(.+\)", expression
        ), name


# -- permissions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FUNCTIONS)
def test_policies_grant_named_actions_on_named_resources(name: str) -> None:
    function = functions()[name]
    policies = function.get("Policies")
    assert policies, f"{name} has no policies"
    granted: set[str] = set()
    for policy in policies:
        assert isinstance(policy, dict), f"{name}: a managed policy ({policy}) grants too much"
        for kind, parameters in policy.items():
            if kind == "Statement":
                for statement in parameters:
                    actions = statement["Action"]
                    for action in [actions] if isinstance(actions, str) else actions:
                        assert "*" not in action, f"{name}: {action}"
                    target = statement["Resource"]
                    assert target != "*", f"{name}: a statement on every resource"
                    granted.add(str(referenced(target) or ""))
            else:
                assert kind in SAM_POLICY_TEMPLATES, f"{name}: policy template {kind}"
                resource = referenced(parameters[SAM_POLICY_TEMPLATES[kind]])
                assert resource in template()["Resources"], f"{name}: {kind} on {resource}"
                granted.add(resource)
    for variable, value in variables_of(function).items():
        if referenced(value) is not None:
            assert referenced(value) in granted, f"{name}: no permission on {variable}"


# -- the state machine, and a linter --------------------------------------------------------------


def test_the_state_machine_gets_every_substitution_it_uses() -> None:
    for name, machine in resources("AWS::Serverless::StateMachine").items():
        definition = (EXAMPLES / machine["DefinitionUri"]).read_text()
        used = set(re.findall(r"\$\{(\w+)\}", definition))
        assert used == set(machine.get("DefinitionSubstitutions", {})), name
        for value in machine["DefinitionSubstitutions"].values():
            assert referenced(value) in functions(), name


def test_cfn_lint_finds_nothing() -> None:
    # cfn-lint comes with moto[server] (the test extra); it checks the CloudFormation resources
    # (tables, queues) against the resource specifications.
    from cfnlint.api import ManualArgs, lint

    assert lint(TEMPLATE.read_text(), config=ManualArgs(regions=["us-east-1"])) == []
