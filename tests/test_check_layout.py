"""scripts/check_layout.py, the layout rules of `make lint`: it passes on this checkout and
fails, naming the file, on each kind of drift in a small tree made for the purpose."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from helpers import PROJECT_DIR

SCRIPT = PROJECT_DIR / "scripts" / "check_layout.py"


@pytest.fixture(scope="module")
def layout() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_layout", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def write(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# Two stages with faces, the way tasks/ is built: lower imports nothing, upper uses its face.
GOOD = {
    "tasks/__init__.py": "",
    "tasks/settings.py": "LIMIT = 1\n",
    "tasks/config.py": "from tasks import settings\n",
    "tasks/lower/__init__.py": "from tasks.lower.keys import key\n",
    "tasks/lower/keys.py": "from tasks import settings\n\nkey = settings.LIMIT\n",
    "tasks/upper/__init__.py": "from tasks.upper.work import work\n",
    "tasks/upper/work.py": "from tasks.lower import key\n\n\ndef work():\n    return key()\n",
    "flows/__init__.py": "",
    "flows/main.py": "from tasks.upper import work\n",
    "blocks/__init__.py": "",
    "tests/lower/test_keys.py": "",
}
# What each part of that tree may import, as scripts/check_layout.py's MAY_IMPORT says of ours.
TABLE: dict[str, set[str]] = {"tasks.lower": set(), "tasks.upper": {"tasks.lower"}}


def test_the_checkout_keeps_the_rules(layout: ModuleType) -> None:
    assert layout.problems(PROJECT_DIR) == []


def test_a_tree_built_the_same_way_passes(layout: ModuleType, tmp_path: Path) -> None:
    assert layout.problems(write(tmp_path, GOOD), TABLE) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            {"tasks/lower/keys.py": "def key():\n    from tasks.upper import work\n"},
            "import cycle: tasks.lower -> tasks.lower.keys -> tasks.upper -> tasks.upper.work",
            id="a cycle through an import inside a function",
        ),
        pytest.param(
            {"tasks/lower/keys.py": "from tasks.upper.work import work\n\nkey = work\n"},
            "import cycle:",
            id="a cycle through the face that importing a submodule runs first",
        ),
        pytest.param(
            {"tasks/upper/work.py": "from tasks.lower.keys import _secret\n"},
            "imports the private name _secret from tasks.lower.keys",
            id="a private name across modules",
        ),
        pytest.param(
            {"tasks/upper/work.py": "from tasks.lower.keys import key\n"},
            "tasks/upper/work.py:1: reaches into tasks.lower.keys",
            id="another stage's module past its face",
        ),
        pytest.param(
            {"flows/main.py": "import tasks.lower.keys\n"},
            "flows/main.py:1: reaches into tasks.lower.keys",
            id="a flow past a face",
        ),
        pytest.param(
            {
                "tasks/side/__init__.py": "from tasks.upper import work\n",
                "tasks/lower/keys.py": "def key():\n    from tasks.side import work\n",
            },
            "tasks.side: a stage the layout's table (MAY_IMPORT) does not list",
            id="a stage the table does not know",
        ),
        pytest.param(
            {
                "tasks/top/__init__.py": "from tasks.top.run import run\n",
                "tasks/top/run.py": "from tasks.upper import work\n\nrun = work\n",
                "tasks/lower/keys.py": "def key():\n    from tasks.top import run\n",
            },
            "tasks/lower/keys.py:2: tasks.lower may not import tasks.top",
            id="a lower floor importing a higher one",
        ),
        pytest.param(
            {"tasks/helpers.py": ""},
            "tasks/helpers.py: a module directly in tasks/",
            id="a module dropped straight into tasks",
        ),
        pytest.param(
            {"tests/elsewhere/test_x.py": ""},
            "tests/elsewhere/: tests mirror tasks/",
            id="a test folder that mirrors nothing",
        ),
        pytest.param(
            {
                "tasks/upper/__init__.py": "from tasks.upper.extra import helper\n"
                "from tasks.upper.work import work\n",
                "tasks/upper/extra.py": "def helper():\n    return 1\n",
                "tasks/upper/work.py": "from tasks.upper import helper\n",
            },
            "import cycle: tasks.upper -> tasks.upper.work",
            id="a module through its own package's face",
        ),
    ],
)
def test_each_kind_of_drift_is_named(
    layout: ModuleType, tmp_path: Path, change: dict[str, str], expected: str
) -> None:
    found = layout.problems(write(tmp_path, {**GOOD, **change}), TABLE)
    assert any(expected in line for line in found), found


def test_the_command_fails_with_one_line_per_problem_on_stderr(tmp_path: Path) -> None:
    shared = {name: GOOD[name] for name in ("tasks/__init__.py", "tasks/settings.py")}
    root = write(tmp_path, {**shared, "tasks/helpers.py": ""})
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(root)], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "tasks/helpers.py: a module directly in tasks/; only config, settings are shared by "
        "every stage: move it into the subpackage of its stage",
        "layout: 1 problem(s)",
    ]
    ok = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


def test_every_python_m_entry_point_the_docs_and_makefile_name_exists() -> None:
    """A module moved without its `python -m` lines in the README, docs/, the Makefile or the
    workflows would leave a command that fails on the first try."""
    texts = [PROJECT_DIR / "README.md", PROJECT_DIR / "Makefile", PROJECT_DIR / "Dockerfile"]
    texts += sorted((PROJECT_DIR / "docs").glob("*.md"))
    texts += sorted((PROJECT_DIR / ".github" / "workflows").glob("*.yml"))
    named = {
        module
        for path in texts
        for module in re.findall(r"python -m ((?:tasks|flows)(?:\.\w+)+)", path.read_text())
    }
    assert {"tasks.lake.setup", "tasks.ops.roles", "flows.bootstrap"} <= named
    for module in sorted(named):
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin, module
        assert "__main__" in Path(spec.origin).read_text(), f"{module} has no __main__ block"
