"""The user's `package.module:name`: found without importing, imported from the working directory, one-line errors."""

import sys

import pytest

from pipeline.errors import PipelineError
from pipeline.imports import find_object, import_object


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    """A working directory holding a package of the user's modules, unloaded again afterwards."""
    monkeypatch.chdir(tmp_path)
    package = tmp_path / "kt_user_code"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "builders.py").write_text("def build():\n    return 'built'\n\n\ndef _private():\n    pass\n")
    (package / "broken.py").write_text("raise RuntimeError('no GPU\\nfor my model')\n")
    yield "kt_user_code"
    for name in [name for name in sys.modules if name.startswith("kt_user_code")]:
        del sys.modules[name]


def test_an_object_is_imported_from_the_working_directory(user_code):
    assert import_object(f"{user_code}.builders:build", key="model.builder")() == "built"


def test_finding_an_object_checks_the_module_exists_without_importing_it(user_code):
    assert find_object(f"{user_code}.broken:build", key="model.builder") == (f"{user_code}.broken", "build")
    assert f"{user_code}.broken" not in sys.modules


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("builders.build", r"^model\.builder=builders\.build: not a reference; allowed: package\.module:function"),
        ("kt_user_code.nothing:build",
         r"^model\.builder=kt_user_code\.nothing:build: "
         r"no module named kt_user_code\.nothing in the working directory"),
        ("kt_no_package.builders:build",
         r"^model\.builder=kt_no_package\.builders:build: cannot import kt_no_package\.builders: No module named"),
    ],
)
def test_a_reference_to_no_module_is_one_line(user_code, reference, message):
    with pytest.raises(PipelineError, match=message):
        find_object(reference, key="model.builder")


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("kt_user_code.builders:missing",
         r"^model\.builder=kt_user_code\.builders:missing: kt_user_code\.builders has no missing; it defines build$"),
        ("kt_user_code.broken:build", r"^model\.builder=kt_user_code\.broken:build: importing kt_user_code\.broken "
                                      r"raised RuntimeError: no GPU for my model$"),
    ],
)
def test_a_module_without_the_object_or_that_raises_is_one_line(user_code, reference, message):
    with pytest.raises(PipelineError, match=message):
        import_object(reference, key="model.builder")
