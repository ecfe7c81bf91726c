"""`mdecost collect`: bad input refused before any call (exit 2); unreadable scopes exit 1."""

import pytest
from typer.testing import CliRunner

import flows.collect  # noqa: F401  (see below)
from flows.cli import app
from flows.lake import scan_dataset

# Prefect binds its console log handler to sys.stderr when first imported; importing it here,
# rather than inside CliRunner's captured (then closed) stderr, keeps its logging working after.

runner = CliRunner()


def test_a_window_beyond_the_retention_or_a_bad_scope_exits_2_before_any_call(simulator, tmp_path):
    config = str(simulator.config_path)
    old = runner.invoke(
        app,
        [
            "collect",
            "--start",
            "2026-08-01",
            "--end",
            "2026-09-01",
            "--as-of",
            "2026-11-15T12:00:00",
            "--config",
            config,
        ],
    )
    assert old.exit_code == 2
    assert "Use --start 2026-08-18 or later" in old.stderr
    bad_scope = runner.invoke(
        app,
        [
            "collect",
            "--start",
            "2026-11-01",
            "--end",
            "2026-11-02",
            "--scope",
            "/subscriptions/x",
            "--config",
            config,
        ],
    )
    assert bad_scope.exit_code == 2
    assert "--scope: '/subscriptions/x' is not a scope of the form" in bad_scope.stderr


@pytest.mark.simulator
def test_collect_prints_the_summary_and_exits_1_naming_the_scope_it_could_not_read(
    simulator, prefect_harness, tmp_path, monkeypatch
):
    monkeypatch.setenv("MDECOST_LAKE__PATH", str(tmp_path))
    known = f"/subscriptions/{simulator.estate.subscriptions[1]}"
    unknown = "/subscriptions/00000000-0000-4000-8000-00000000beef"
    result = runner.invoke(
        app,
        [
            "collect",
            "--start",
            "2026-11-01",
            "--end",
            "2026-11-16",
            "--as-of",
            "2026-11-15T12:00:00",
            "--scope",
            known,
            "--scope",
            unknown,
            "--config",
            str(simulator.config_path),
        ],
    )
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith(
        "collected [2026-11-01, 2026-11-16) as of 2026-11-15T12:00:00Z for 2 scope(s): rows "
        "inventory "
    )
    assert "could not read 1 scope(s):" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == f"error: could not read {unknown}"
    assert set(scan_dataset(tmp_path, "inventory").collect()["scope"]) == {known}


def test_scopes_prints_what_collection_queries_and_the_widest_scope_with_its_qpu(simulator):
    result = runner.invoke(
        app, ["scopes", "--months", "13", "--config", str(simulator.config_path)]
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "subscriptions the credential reads: 5"
    assert "collection queries: each subscription ([azure] cost_scopes is empty)" in lines
    # 5 subscriptions x 13 months = 65 QPU; the billing account: 13.
    assert "  QPU per month of data: 5; 13 month(s): 65 QPU, 6 min of the tenant's quota" in lines
    assert lines[-1].endswith(
        f'set [azure] cost_scopes = ["{simulator.billing.account_id}"] to use it'
    )
