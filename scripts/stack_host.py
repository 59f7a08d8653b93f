"""Helpers shared by the host-side operator scripts (doctor.py, backup_restore.py).

Standard library only: the host needs python3 and Docker, nothing else.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def compose_command(*args: str) -> list[str]:
    """The same command as scripts/lib.sh's compose(): COMPOSE_PROJECT_NAME and .env apply."""
    return ["docker", "compose", "--project-directory", str(REPO), *args]


# What last_line returns when a command printed nothing.
NO_OUTPUT = "(no output)"


def last_line(text: str | bytes) -> str:
    """The last non-blank line of a command's output: usually the error that matters."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else NO_OUTPUT


def version_tuple(text: str) -> tuple[int, ...]:
    """(major, minor, patch) from text such as "3.17.2" or "Docker version 28.2.2, build x"."""
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])
