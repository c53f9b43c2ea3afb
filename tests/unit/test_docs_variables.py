"""Every ``HIGHWAY_*`` variable the documentation and the deployment files name still exists.

Settings get renamed (they are prefixed by concern); a README or compose file that keeps the old
name sends an operator to a variable the process then refuses (``core.settings.misspelt_variables``).
"""

from __future__ import annotations

import re
from pathlib import Path

from core.settings import ENV_PREFIX, Settings
from core.settings_rules import NOT_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
VARIABLE = re.compile(rf"\b{ENV_PREFIX}[A-Z0-9_]+")


def documents() -> list[Path]:
    found = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "docker-compose.yml"]
    found.append(ROOT / "Dockerfile")
    return found


def stale_variables(text: str) -> list[tuple[int, str]]:
    """(line, name) of every ``HIGHWAY_*`` token that names no setting and no allowed prefix (pure)."""
    known = {f"{ENV_PREFIX}{field.upper()}" for field in Settings.model_fields}
    stale = []
    for number, line in enumerate(text.splitlines(), start=1):
        for name in VARIABLE.findall(line):
            if name not in known and not name.startswith(NOT_SETTINGS):
                stale.append((number, name))
    return stale


def test_the_scan_tells_settings_from_stale_names() -> None:
    text = (
        "set `HIGHWAY_KAFKA_BOOTSTRAP` and HIGHWAY_CONFIG; HIGHWAY_FAUST_X is faust's\n"
        "old: HIGHWAY_S3_ENDPOINT_URL=x, every HIGHWAY_* variable, HIGHWAY_<FIELD>\n"
    )
    assert stale_variables(text) == [(2, "HIGHWAY_S3_ENDPOINT_URL")]


def test_documented_variables_name_settings() -> None:
    problems = []
    seen = 0
    for path in documents():
        text = path.read_text()
        seen += len(VARIABLE.findall(text))
        problems += [f"{path.relative_to(ROOT)}:{line}: {name}" for line, name in stale_variables(text)]
    assert not problems, "variables that are not settings (see core/settings.py):\n" + "\n".join(problems)
    assert seen > 50  # the configuration reference alone names every setting
