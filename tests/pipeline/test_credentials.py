"""Passwords masked in whatever is recorded; the server login read from MLflow's own variables."""

from base64 import b64decode

from pipeline.credentials import basic_auth_header, redact, redact_files


def test_redact_masks_every_url_password_and_leaves_the_rest():
    text = "sweep.storage=postgresql://team:s3cr:et@db.lan:5432/sweeps tracking.uri=http://alice:pw@host:5000 x=a:b@c"
    assert redact(text) == ("sweep.storage=postgresql://team:***@db.lan:5432/sweeps "
                            "tracking.uri=http://alice:***@host:5000 x=a:b@c")
    assert redact("sqlite:////tmp/mlruns/mlflow.db") == "sqlite:////tmp/mlruns/mlflow.db"
    assert redact("postgresql://team@db.lan/sweeps") == "postgresql://team@db.lan/sweeps"  # no password, unchanged


def test_basic_auth_header_uses_mlflows_login_variables(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    assert basic_auth_header() == {}
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "p:w")
    scheme, token = basic_auth_header()["Authorization"].split()
    assert (scheme, b64decode(token).decode()) == ("Basic", "alice:p:w")


def test_redact_files_masks_hydras_snapshot_in_place(tmp_path):
    (tmp_path / "overrides.yaml").write_text("- sweep.storage=postgresql://u:pw@db/s\n- trainer.epochs=2\n")
    (tmp_path / "hydra.yaml").write_text("no: secrets\n")
    redact_files(tmp_path)
    assert (tmp_path / "overrides.yaml").read_text() == "- sweep.storage=postgresql://u:***@db/s\n- trainer.epochs=2\n"
    assert (tmp_path / "hydra.yaml").read_text() == "no: secrets\n"
