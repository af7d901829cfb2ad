"""The faces hand on the cloud engines without importing them: a local run never loads boto3,
prefect-aws or sqlglot, and asking for a name loads its module then."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tasks import settings


def test_a_local_run_imports_no_cloud_engine_until_one_is_asked_for() -> None:
    script = (
        "import sys\n"
        "import flows.main\n"
        "heavy = ('boto3', 'botocore', 'prefect_aws', 'sqlglot')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "from tasks.lake import S3Lake\n"
        "from tasks.model import model_schemas\n"
        "print(S3Lake.__module__, 'boto3' in sys.modules, 'sqlglot' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=settings.PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "tasks.lake.s3 True True"]


def test_a_name_no_face_hands_on_is_an_attribute_error() -> None:
    import tasks.process

    with pytest.raises(AttributeError, match=r"module 'tasks\.process' has no attribute 'nope'"):
        tasks.process.nope  # noqa: B018
