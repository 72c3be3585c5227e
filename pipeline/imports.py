"""The user's own code named in config as `package.module:name` (a model builder, a custom layer).

It is looked up in the working directory first, then in installed packages, as `python -m` does for scripts:
`find_object` checks only that the module exists (no import, so no TensorFlow), `import_object` imports it
(`pkgutil.resolve_name`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pkgutil
import re
import sys
from typing import Any, Iterator

from pipeline.errors import PipelineError, one_line

_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def find_object(reference: str, *, key: str) -> tuple[str, str]:
    """(module, attribute) of `package.module:name`, once the module is known to exist."""
    if not _REFERENCE.match(reference):
        raise PipelineError(f"{key}={reference}: not a reference; allowed: package.module:function, "
                            "e.g. my_models:build")
    module, _, attribute = reference.partition(":")
    with _working_directory_importable():
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError) as error:  # a parent package that is missing or fails to import
            raise PipelineError(f"{key}={reference}: cannot import {module}: {error}") from None
    if found is None:
        raise PipelineError(
            f"{key}={reference}: no module named {module} in the working directory ({os.getcwd()}) "
            "or the installed packages"
        )
    return module, attribute


def import_object(reference: str, *, key: str) -> Any:
    module_name, attribute = find_object(reference, key=key)
    with _working_directory_importable():
        try:
            return pkgutil.resolve_name(reference)
        except Exception as error:  # noqa: BLE001 - the user's module raised while importing, or lacks the name
            module = sys.modules.get(module_name)  # only a module that imported stays there
            if module is None or not isinstance(error, AttributeError):
                raise PipelineError(f"{key}={reference}: importing {module_name} raised {one_line(error)}") from None
    public = sorted(name for name in vars(module) if not name.startswith("_"))
    raise PipelineError(f"{key}={reference}: {module_name} has no {attribute}; "
                        f"it defines {', '.join(public) or 'nothing'}")


@contextlib.contextmanager
def _working_directory_importable() -> Iterator[None]:
    """`python -m` puts the working directory on sys.path, an installed console script does not."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added:
            sys.path.remove(cwd)
