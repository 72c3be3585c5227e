"""Credentials: the MLflow server login read from the environment, and passwords kept out of everything recorded.

A team server takes its login from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (what MLflow's own client
reads), never from the config. A database URL may still carry a password (`postgresql://user:secret@host/db` in
sweep.storage or tracking.uri): `redact` masks it wherever a value is printed, tagged, logged or saved.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

USERNAME_VARIABLE = "MLFLOW_TRACKING_USERNAME"
PASSWORD_VARIABLE = "MLFLOW_TRACKING_PASSWORD"
MASK = "***"

# scheme://user:password@host -> scheme://user:***@host, anywhere in a text (a URL inside a longer message too).
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@\s]+)@")


def redact(text: str) -> str:
    """`text` with every URL password replaced by ***."""
    return _URL_PASSWORD.sub(lambda match: f"{match['head']}{MASK}@", text)


def redact_files(folder: Path) -> None:
    """Mask the passwords in the text files of `folder` (Hydra's .hydra/ snapshot of the command line)."""
    for path in folder.glob("*.yaml"):
        text = path.read_text()
        masked = redact(text)
        if masked != text:
            path.write_text(masked)


def basic_auth_header() -> dict[str, str]:
    """The Authorization header MLflow's client sends for the login in the environment ({} without one)."""
    username, password = os.environ.get(USERNAME_VARIABLE), os.environ.get(PASSWORD_VARIABLE)
    if not username or password is None:
        return {}
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}
