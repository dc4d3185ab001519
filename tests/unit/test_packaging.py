"""What a user gets from the package: the license, ``--version``, ``--help`` that answers at once, help on every option.

Each check runs the real console entry points (``python -m stream`` is ``adaptlog``, ``python -m trainer.cli`` is
``adaptlog-train``) in a subprocess.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from stream.cli import _parser as adaptlog_parser
from trainer.cli import FAMILY_NAMES
from trainer.cli import _parser as train_parser

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = {"adaptlog": ["-m", "stream"], "adaptlog-train": ["-m", "trainer.cli"]}
TRAIN_COMMANDS = ("pretrain", "adapt", "evaluate", "serve", "status", "rollback")
# sha256 of https://www.apache.org/licenses/LICENSE-2.0.txt, the text license scanners recognise
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def run(program: str, *args: str, python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *python_flags, *PROGRAMS[program], *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_license_is_the_apache_2_text_and_pyproject_names_it() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License" in text
    assert hashlib.sha256(text.encode()).hexdigest() == APACHE_2_SHA256  # verbatim: scanners match it exactly
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"  # an SPDX expression (PEP 639), not the deprecated table
    assert project["license-files"] == ["LICENSE"]


def test_built_metadata_carries_the_license_without_a_deprecation_warning(tmp_path: Path) -> None:
    """setuptools' own metadata hook on a copy of the project files (the source tree stays untouched)."""
    pytest.importorskip("setuptools", minversion="77")  # PEP 639 license expressions
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tmp_path / name)
    for package in ("stream", "trainer"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").touch()
    (tmp_path / "out").mkdir()
    build = textwrap.dedent(
        """
        from setuptools import build_meta
        print(build_meta.prepare_metadata_for_build_wheel("out"))
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", build], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "project.license" not in done.stdout + done.stderr  # "`project.license` as a TOML table is deprecated"
    dist_info = tmp_path / "out" / done.stdout.strip().splitlines()[-1]
    metadata = (dist_info / "METADATA").read_text()
    assert "License-Expression: Apache-2.0\n" in metadata
    assert "License-File: LICENSE\n" in metadata
    assert (dist_info / "licenses" / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()


def test_the_wheel_holds_stream_and_trainer_only() -> None:
    """pyproject's package discovery, run as setuptools runs it: harness/ (shared by tests and benchmarks), tests/ and
    bench/ stay out of the wheel (and out of the image: .dockerignore)."""
    from setuptools import find_packages

    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {name.split(".")[0] for name in find_packages(where=str(ROOT), include=include)} == {"stream", "trainer"}
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {"harness", "tests", "bench"} <= set(ignored)


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_version_prints_the_installed_package_version(program: str) -> None:
    try:
        expected = version("adaptlog")
    except PackageNotFoundError:
        expected = "unknown"
    done = run(program, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{program} {expected}\n"


def imported_modules(importtime_stderr: str) -> set[str]:
    """Module names from ``python -X importtime`` ("import time: self | cumulative | name")."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


@pytest.mark.parametrize(
    "args",
    [("--help",), ("--version",), *((command, "--help") for command in TRAIN_COMMANDS)],
    ids=lambda args: " ".join(args),
)
def test_train_help_and_version_import_no_torch(args: tuple[str, ...]) -> None:
    done = run("adaptlog-train", *args, python_flags=("-X", "importtime"))
    assert done.returncode == 0, done.stderr
    modules = imported_modules(done.stderr)
    assert "argparse" in modules  # the import log was read
    heavy = sorted(m for m in modules if m.split(".")[0] in ("torch", "transformers", "aiokafka"))
    assert heavy == [], f"{' '.join(args)} imported {heavy[:5]}"


def test_help_of_every_train_command_lists_its_options() -> None:
    for command in TRAIN_COMMANDS:
        done = run("adaptlog-train", command, "--help")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"usage: adaptlog-train {command}")
    pretrain = run("adaptlog-train", "pretrain", "--help").stdout
    assert "{logllm,logtransfer,translog}" in pretrain


def test_family_names_are_the_registry_of_families() -> None:
    from stream.model.families import FAMILIES  # imports torch: fine here, not in the parser

    assert set(FAMILY_NAMES) == set(FAMILIES) and len(FAMILY_NAMES) == len(FAMILIES)


def actions_without_help(parser: argparse.ArgumentParser, path: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
            missing.append(f"{path} {name}")
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:  # each command's line in the parent's help
                if not (choice.help or "").strip():
                    missing.append(f"{path} {choice.dest}")
            for command, subparser in action.choices.items():
                missing += actions_without_help(subparser, f"{path} {command}")
    return missing


@pytest.mark.parametrize(("program", "build"), [("adaptlog", adaptlog_parser), ("adaptlog-train", train_parser)])
def test_every_option_and_command_has_help(program: str, build) -> None:
    parser = build()
    assert actions_without_help(parser, program) == []
    assert any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)  # the walk reached commands
