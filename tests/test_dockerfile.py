"""The Dockerfile, checked by reading (no Docker engine here): it builds from files that
exist, and installs the versions the suite passed on."""

from __future__ import annotations

import re

from helpers import PROJECT_DIR

DOCKERFILE = (PROJECT_DIR / "Dockerfile").read_text()
PINS = dict(
    line.split("==", 1)
    for line in (PROJECT_DIR / "constraints.txt").read_text().splitlines()
    if "==" in line and not line.startswith("#")
)


def instructions() -> list[str]:
    """Instructions with their continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def test_every_copied_path_is_in_the_project() -> None:
    copied = [
        source
        for line in instructions()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    ]
    assert copied
    assert [p for p in copied if not (PROJECT_DIR / p).exists()] == []


def test_the_base_image_and_the_pins_are_the_tested_prefect() -> None:
    (base,) = [line for line in instructions() if line.startswith("FROM ")]
    version = re.search(r"prefecthq/prefect:([\d.]+)-python", base)
    assert version and version[1] == PINS["prefect"]
    assert f'"prefect=={PINS["prefect"]}"' in DOCKERFILE


def test_every_install_is_held_to_the_constraints_or_installs_nothing_new() -> None:
    installs = [line for line in instructions() if "pip install" in line]
    assert installs
    for line in installs:
        assert "--constraint constraints.txt" in line or "--no-deps" in line, line
