"""A tracked run's artifacts: config, checkpoints, plots and reports."""

from __future__ import annotations


def test_artifacts_hold_config_checkpoints_plots_and_reports(finished):
    store, result, _ = finished
    root = store.root / "artifacts"
    files = {path.relative_to(root).parts[2:] for path in root.glob("*/artifacts/**/*") if path.is_file()}
    expected = {
        ("config", "config.yaml"), ("config", "overrides.yaml"),
        ("checkpoints", "best.keras"), ("checkpoints", "last.keras"), ("checkpoints", "state.json"),
        ("plots", "learning_curve.png"), ("plots", "confusion_matrix.png"),
        ("reports", "classification_report.txt"), ("reports", "model_summary.txt"),
    }
    assert expected <= files
    run_folder = next(root.glob(f"{result.run_id}/artifacts"))
    assert "macro avg" in (run_folder / "reports" / "classification_report.txt").read_text()
    assert "Total params" in (run_folder / "reports" / "model_summary.txt").read_text()
    assert (run_folder / "plots" / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
