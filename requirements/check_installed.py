"""Check that an environment holds exactly the versions a lock pins: ``python requirements/check_installed.py LOCK...``.

Exit 0 when every pinned package is installed at its pinned version, 1 listing every difference. ``.ci/run`` runs
it after ``make install`` and tests/unit/test_lock.py runs it on the test environment, so a suite never passes on
versions the lock does not name. (Extra packages are allowed: a developer's venv may hold a debugger.)
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def normalized(name: str) -> str:
    """PEP 503: the same project whatever its spelling (Pillow, pillow; typing_extensions, typing-extensions)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: Path) -> dict[str, str]:
    """Project name -> pinned version, for every requirement line of a pip-compile style lock."""
    out = {}
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match:
            out[normalized(match.group(1))] = match.group(2)
    return out


def differences(locks: list[Path]) -> list[str]:
    installed = {normalized(d.metadata["Name"]): d.version for d in metadata.distributions()}
    problems = []
    for lock in locks:
        for name, version in sorted(pins(lock).items()):
            have = installed.get(name)
            if have is None:
                problems.append(f"{name}=={version} ({lock.name}) is not installed")
            elif have != version:
                problems.append(f"{name}=={version} ({lock.name}) but {have} is installed")
    return problems


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: check_installed.py LOCK...", file=sys.stderr)
        return 2
    problems = differences([Path(a) for a in argv])
    for problem in problems:
        print(f"lock: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
