"""Names of sweeps and campaigns: each is a folder under ``--storage-path`` (and ``report-NAME``)
and a value in MLflow search filters, so every command that takes ``--name`` checks it alike
(:func:`name_problem`) before it touches either, and filters quote values with :func:`quoted`."""

from __future__ import annotations

import re

#: Nothing that could leave the folder (``..``, ``/``) or break a search filter (quotes).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

#: The longest name: a folder's name (most file systems allow 255 bytes) with room for what is
#: put around it (``report-NAME``; a campaign's sweeps are ``NAME-SPACE``).
MAX_NAME = 128


def name_problem(name: str, flag: str = "--name", limit: int = MAX_NAME) -> str | None:
    """What is wrong with ``name``, or None."""
    if not NAME.fullmatch(name):
        return (
            f"{flag} {name!r}: expected letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    if len(name) > limit:
        return f"{flag}: {len(name)} characters, expected at most {limit} (a folder's name)"
    return None


def quoted(value: str) -> str:
    """``value`` as a string literal of an MLflow search filter. MLflow's filter syntax has no
    escapes: a value is quoted with the quote it does not contain, and one it cannot hold (both
    quotes, or a backslash, which the filter's tokenizer reads as an escape) is refused."""
    if "\\" in value or ("'" in value and '"' in value):
        raise ValueError(f"{value!r}: a name with a backslash or both quotes cannot be searched")
    return f'"{value}"' if "'" in value else f"'{value}'"
