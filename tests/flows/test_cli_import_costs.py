"""`mdecost import-costs`: real export samples into the lake; a re-import replaces, never adds."""

from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app
from flows.lake import scan_dataset

runner = CliRunner()
EXPORTS = Path(__file__).resolve().parents[1] / "fixtures" / "exports"


def test_importing_the_same_export_twice_counts_it_once(tmp_path, monkeypatch):
    monkeypatch.setenv("MDECOST_LAKE__PATH", str(tmp_path / "lake"))
    monkeypatch.chdir(tmp_path)
    sample = str(EXPORTS / "EA_ActualCost_Small.csv")
    for _ in range(2):
        result = runner.invoke(app, ["import-costs", sample, "--cost-type", "ActualCost"])
        assert result.exit_code == 0, result.output
        assert "11 rows; ea-cost-details; ActualCost" in result.stdout
    costs = scan_dataset(tmp_path / "lake", "costs").collect()
    # 11 rows whose Cost column sums to 8.5450077867419368 (csv + decimal, see test_exports.py).
    assert costs.height == 11
    assert round(costs["billed_cost"].sum(), 10) == 8.5450077867


def test_a_file_that_is_not_an_export_is_a_one_line_error_and_the_lake_is_untouched(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("MDECOST_LAKE__PATH", str(tmp_path / "lake"))
    monkeypatch.chdir(tmp_path)
    stray = tmp_path / "notes.csv"
    stray.write_text("when,what\n2026-10-01,lunch\n")
    result = runner.invoke(app, ["import-costs", str(stray)])
    assert result.exit_code == 2
    assert str(stray) in result.output
    assert (
        not (tmp_path / "lake").exists()
        or scan_dataset(tmp_path / "lake", "costs").collect().height == 0
    )
