"""Keras's dataset files (mnist, fashion_mnist) missing: offline, or a download that fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.data.fashion_mnist import FASHION_FILES
from tests.pipeline.data.conftest import data_settings, error_message

KERAS_SOURCES = pytest.mark.parametrize(
    "source, folder, first_file", [("mnist", "", "mnist.npz"), ("fashion_mnist", "fashion-mnist", FASHION_FILES[0])]
)


CLOSED_PORT_ORIGIN = "http://127.0.0.1:9/"  # the discard port: nothing listens, the connection is refused at once


@KERAS_SOURCES
def test_keras_files_offline_without_download(tmp_path: Path, source: str, folder: str, first_file: str) -> None:
    message = error_message(data_settings(f"data={source}", f"data.cache_dir={tmp_path}", "data.download=false"))
    assert f"{first_file}" in message and "data.download=false" in message
    assert f"in {tmp_path / folder}/" in message and "data=npz data.path=" in message


@KERAS_SOURCES
def test_keras_files_download_failure(tmp_path: Path, source: str, folder: str, first_file: str) -> None:
    settings = data_settings(f"data={source}", f"data.cache_dir={tmp_path}", f"data.origin={CLOSED_PORT_ORIGIN}")
    message = error_message(settings)
    assert f"could not download {CLOSED_PORT_ORIGIN}{first_file}" in message and "refused" in message
    assert f"in {tmp_path / folder}/" in message and "data=npz data.path=" in message
    assert not (tmp_path / folder / first_file).exists()
