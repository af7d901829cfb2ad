"""The least-privilege IAM policies in the README against what the code really does: every lake
prefix the code writes (found in the source, not listed by hand), every Glue and Athena API it
calls (found in the source, named by botocore's service models), and the Glue catalog actions
its Athena statements need (the statements the code really sends, recorded at the client).

A small evaluator reads the policies: Allow statements, wildcards in actions and resources,
StringLike/StringEquals conditions. It is no substitute for IAM, but it catches a prefix or an
action the code started to use and the policy forgot, which is how the published policy once
blocked every Redshift COPY."""

from __future__ import annotations

import ast
import json
import re
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name

from tasks import settings
from tasks.lake.local import LocalLake
from tasks.load.redshift import LOAD_PREFIX
from tasks.model.athena import AthenaRunner, run_models_athena
from tasks.process import glue
from tasks.state.backup import BACKUP_PREFIX

PROJECT = Path(__file__).resolve().parents[1]
README = PROJECT / "README.md"
BUCKET, LAKE = "acme-reddit-lake", "prod"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
JOB_ARN = "arn:aws:glue:REGION:ACCOUNT:job/reddit-process"
WORKGROUP_ARN = "arn:aws:athena:REGION:ACCOUNT:workgroup/reddit"
CATALOG = "arn:aws:glue:REGION:ACCOUNT"
GLUE_ROLE_ARN = "arn:aws:iam::ACCOUNT:role/reddit-glue"
ATHENA_RESULTS = "athena-results"  # the workgroup's output location the README prescribes
S3_OBJECT_WRITE = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")
# The source the flow runner executes, and the Glue job's script.
RUNNER_SOURCE = ("tasks", "flows", "blocks")
GLUE_SCRIPT = PROJECT / "glue_scripts" / "process_reddit.py"
# What Athena asks of the Glue catalog for each kind of statement the code sends (Athena
# user guide, "Fine-grained access to databases and tables in the AWS Glue Data Catalog", and
# the catalog actions of AmazonAthenaFullAccess for INSERT INTO a partitioned table).
CATALOG_ACTIONS = {
    "create_database": ("glue:GetDatabase", "glue:CreateDatabase"),
    "create_table": ("glue:GetDatabase", "glue:GetTable", "glue:CreateTable"),
    "insert": (
        "glue:GetDatabase",
        "glue:GetTable",
        "glue:GetPartition",
        "glue:GetPartitions",
        "glue:BatchGetPartition",
        "glue:CreatePartition",
        "glue:BatchCreatePartition",
        "glue:UpdatePartition",
    ),
    "select": ("glue:GetDatabase", "glue:GetTable", "glue:GetPartitions"),
}


# ------------------------------------------------------------------------ reading the docs


def readme_policies() -> dict[str, dict[str, Any]]:
    """The JSON block after each `<!-- iam-policy: NAME -->` marker in the README."""
    text = README.read_text()
    found = re.findall(r"<!-- iam-policy: ([\w-]+) -->\s*```json\n(.*?)\n```", text, re.S)
    return {name: json.loads(body) for name, body in found}


def _listify(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _conditions_hold(condition: dict[str, dict[str, Any]], context: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        for key, allowed in tests.items():
            if key not in context:
                return False
            value, patterns = context[key], _listify(allowed)
            if operator == "StringLike":
                if not any(fnmatchcase(value, p) for p in patterns):
                    return False
            elif operator == "StringEquals":
                if value not in patterns:
                    return False
            else:
                raise AssertionError(f"the evaluator does not know {operator}")
    return True


def allows(
    policy: dict[str, Any], action: str, resource: str, context: dict[str, str] | None = None
) -> bool:
    """Whether some Allow statement grants `action` on `resource` (no Deny is used)."""
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        if not any(fnmatchcase(action.lower(), a.lower()) for a in _listify(statement["Action"])):
            continue
        if not any(fnmatchcase(resource, r) for r in _listify(statement["Resource"])):
            continue
        if _conditions_hold(statement.get("Condition", {}), context or {}):
            return True
    return False


def object_arn(prefix: str, rest: str = "dt=2024-03-01/batch.parquet") -> str:
    return f"{BUCKET_ARN}/{LAKE}/{prefix}/{rest}"


def may_list(policy: dict[str, Any], prefix: str) -> bool:
    return allows(policy, "s3:ListBucket", BUCKET_ARN, {"s3:prefix": f"{LAKE}/{prefix}/"})


# ---------------------------------------------------------------------- reading the code


def _python_files(*roots: str) -> list[Path]:
    return sorted(p for root in roots for p in (PROJECT / root).rglob("*.py"))


def lake_prefixes(files: list[Path]) -> dict[str, str]:
    """Module-level `*_PREFIX` / `*_KEY` string constants that are lake paths (contain '/')."""
    found = {}
    for path in files:
        for node in ast.parse(path.read_text()).body:
            if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)):
                continue
            value = node.value.value
            for target in node.targets:
                if (
                    isinstance(target, ast.Name)
                    and target.id.endswith(("_PREFIX", "_KEY"))
                    and isinstance(value, str)
                    and "/" in value
                ):
                    found[f"{path.relative_to(PROJECT)}:{target.id}"] = value
    return found


def aws_calls(service: str, files: list[Path]) -> set[str]:
    """Operation names (CamelCase) of `service` the code calls: `x.start_job_run(...)` and
    `x.get_paginator("get_job_runs")`. A name shared with another service's model is counted
    for both, which can only make the test stricter."""
    model = botocore.session.get_session().get_service_model(service)
    operations = {xform_name(name): name for name in model.operation_names}
    called = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name = node.func.attr
            if name == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
                name = str(node.args[0].value)
            if name in operations:
                called.add(operations[name])
    return called


class RecordingAthena:
    """The network edge of the Athena engine: records the statements, each SUCCEEDED at once,
    with the count query's rows."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def start_query_execution(self, QueryString: str, **_: Any) -> dict[str, str]:
        self.queries.append(QueryString)
        return {"QueryExecutionId": str(len(self.queries))}

    def get_query_execution(self, QueryExecutionId: str) -> dict[str, Any]:
        return {"QueryExecution": {"Status": {"State": "SUCCEEDED"}}}

    def get_query_results(self, QueryExecutionId: str) -> dict[str, Any]:
        rows = [["model", "rows"], ["posts", "1"], ["comments", "1"], ["subreddit_daily", "1"]]
        return {"ResultSet": {"Rows": [{"Data": [{"VarCharValue": v} for v in r]} for r in rows]}}


def _statement_kind(sql: str) -> tuple[str, list[str]]:
    """(kind, tables) of an Athena statement the code sends."""
    words = sql.split()
    if sql.startswith("CREATE DATABASE"):
        return "create_database", []
    if sql.startswith("CREATE EXTERNAL TABLE IF NOT EXISTS"):
        return "create_table", [words[5]]
    if sql.startswith("INSERT INTO"):  # and the tables it reads
        return "insert", [words[2], *re.findall(r"FROM (processed_\w+|curated_\w+)", sql)]
    if sql.startswith("SELECT"):
        return "select", re.findall(r"FROM (\w+)", sql)
    raise AssertionError(f"a statement kind the policy test does not know: {sql[:80]}")


# ------------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def policies() -> dict[str, dict[str, Any]]:
    found = readme_policies()
    assert set(found) == {"flow-runner", "glue-job", "redshift-copy"}, found.keys()
    return found


def test_the_layout_constants_are_found_in_the_source() -> None:
    """The discovery below is not vacuous: it finds the prefixes the code is known to write."""
    found = set(lake_prefixes(_python_files(*RUNNER_SOURCE)).values())
    assert {
        settings.RAW_PREFIX,
        settings.PROCESSED_PREFIX,
        settings.CURATED_PREFIX,
        settings.QUARANTINE_PREFIX,
        LOAD_PREFIX,
        BACKUP_PREFIX,
        glue.SCRIPT_KEY,
        glue.REQUESTS_PREFIX,
        glue.MANIFESTS_PREFIX,
    } <= found


def test_the_runner_may_write_read_list_and_delete_every_prefix_the_code_writes(
    policies: dict[str, dict[str, Any]],
) -> None:
    runner = policies["flow-runner"]
    prefixes = {**lake_prefixes(_python_files(*RUNNER_SOURCE)), "athena output": ATHENA_RESULTS}
    missing = [
        f"{where} = {prefix!r}: {action}"
        for where, prefix in sorted(prefixes.items())
        for action in ("s3:GetObject", "s3:DeleteObject", *S3_OBJECT_WRITE, "s3:ListBucket")
        if not (
            may_list(runner, prefix)
            if action == "s3:ListBucket"
            else allows(runner, action, object_arn(prefix))
        )
    ]
    assert not missing, "the flow runner's policy does not grant:\n" + "\n".join(missing)
    assert allows(runner, "s3:GetBucketLocation", BUCKET_ARN)  # Athena checks its results bucket
    # nothing outside the lake's folder
    assert not allows(runner, "s3:PutObject", f"{BUCKET_ARN}/other/raw/x")


def test_the_runners_kms_use_goes_through_s3_only(policies: dict[str, dict[str, Any]]) -> None:
    runner, key = policies["flow-runner"], "arn:aws:kms:REGION:ACCOUNT:key/KEY-ID"
    via_s3 = {"kms:ViaService": "s3.REGION.amazonaws.com"}
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        assert allows(runner, action, key, via_s3)
        assert not allows(runner, action, key)


def test_the_glue_role_reads_its_inputs_and_writes_only_its_outputs(
    policies: dict[str, dict[str, Any]],
) -> None:
    role = policies["glue-job"]
    script = lake_prefixes([GLUE_SCRIPT])
    raw, processed = script["glue_scripts/process_reddit.py:RAW_PREFIX"], settings.PROCESSED_PREFIX
    tmp = script["glue_scripts/process_reddit.py:TMP_PREFIX"]
    assert script["glue_scripts/process_reddit.py:PROCESSED_PREFIX"] == processed
    for prefix in (raw, glue.REQUESTS_PREFIX):
        assert allows(role, "s3:GetObject", object_arn(prefix))
    assert allows(role, "s3:GetObject", f"{BUCKET_ARN}/{LAKE}/{glue.SCRIPT_KEY}")
    for prefix in (processed, tmp, glue.MANIFESTS_PREFIX):
        assert allows(role, "s3:PutObject", object_arn(prefix)), prefix
    for prefix in (processed, tmp):  # the move out of the temporary prefix, a rewrite of a day
        assert allows(role, "s3:DeleteObject", object_arn(prefix)), prefix
        assert may_list(role, prefix), prefix
    # least privilege: the job never writes raw, curated, or the runner's load files
    for prefix in (raw, settings.CURATED_PREFIX, LOAD_PREFIX, BACKUP_PREFIX):
        assert not allows(role, "s3:PutObject", object_arn(prefix)), prefix
        assert not allows(role, "s3:DeleteObject", object_arn(prefix)), prefix


def test_the_copy_role_reads_the_files_the_redshift_load_writes(
    policies: dict[str, dict[str, Any]],
) -> None:
    role = policies["redshift-copy"]
    # what load_redshift writes and COPY reads: a manifest and the rewritten parts
    for rest in ("run-1/posts.manifest", "run-1/posts/part-00000.parquet"):
        assert allows(role, "s3:GetObject", object_arn(LOAD_PREFIX, rest)), rest
    assert may_list(role, f"{LOAD_PREFIX}/run-1")
    assert allows(role, "s3:GetBucketLocation", BUCKET_ARN)
    for prefix in (settings.RAW_PREFIX, settings.CURATED_PREFIX, BACKUP_PREFIX):
        assert not allows(role, "s3:GetObject", object_arn(prefix)), prefix
    assert not allows(role, "s3:PutObject", object_arn(LOAD_PREFIX))


def test_every_glue_and_athena_api_the_code_calls_is_granted(
    policies: dict[str, dict[str, Any]],
) -> None:
    runner, files = policies["flow-runner"], _python_files(*RUNNER_SOURCE)
    glue_calls, athena_calls = aws_calls("glue", files), aws_calls("athena", files)
    # not vacuous: the calls the engines are known to make are found
    assert {"StartJobRun", "GetJobRun", "BatchStopJobRun", "GetJobRuns"} <= glue_calls
    assert {"StartQueryExecution", "GetQueryExecution", "StopQueryExecution"} <= athena_calls
    missing = [f"glue:{op}" for op in glue_calls if not allows(runner, f"glue:{op}", JOB_ARN)]
    missing += [
        f"athena:{op}" for op in athena_calls if not allows(runner, f"athena:{op}", WORKGROUP_ARN)
    ]
    assert not missing, f"the flow runner's policy lacks {sorted(missing)}"
    # CreateJob/UpdateJob hand Glue its role: only that role, only to Glue
    assert allows(
        runner, "iam:PassRole", GLUE_ROLE_ARN, {"iam:PassedToService": "glue.amazonaws.com"}
    )
    assert not allows(
        runner, "iam:PassRole", GLUE_ROLE_ARN, {"iam:PassedToService": "ec2.amazonaws.com"}
    )


def test_the_catalog_actions_of_every_athena_statement_are_granted(
    policies: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    runner_policy = policies["flow-runner"]
    athena = RecordingAthena()
    runner = AthenaRunner(athena, "reddit", "reddit", "s3://x/", sleep=lambda _: None)
    run_models_athena(runner, LocalLake(tmp_path), "s3://acme-reddit-lake/prod", ["2024-03-01"])
    kinds = {_statement_kind(sql)[0] for sql in athena.queries}
    assert kinds == set(CATALOG_ACTIONS), kinds  # every kind of statement was seen
    missing = []
    for sql in athena.queries:
        kind, tables = _statement_kind(sql)
        resources = [f"{CATALOG}:catalog", f"{CATALOG}:database/reddit"]
        resources += [f"{CATALOG}:table/reddit/{table}" for table in tables]
        missing += [
            f"{action} on {resource} ({kind})"
            for action in CATALOG_ACTIONS[kind]
            for resource in resources
            if not allows(runner_policy, action, resource)
        ]
    assert not missing, "the flow runner's policy lacks:\n" + "\n".join(sorted(set(missing)))
