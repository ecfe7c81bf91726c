"""Bad configuration beyond tests/flows/test_config.py: wrong types, scopes that are ARM ids of
the wrong kind, mistakes made through environment variables, and the CLI's one-line errors.
Every error is one line naming where the setting came from and which it is."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.config import ConfigError, load_settings

SUBSCRIPTION = "/subscriptions/00000000-0000-0000-0000-000000000001"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mdecost.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[collect]\nmax_retries = "many"\n',
            "collect.max_retries Input should be a valid integer, unable to parse string as an "
            "integer",
        ),
        (
            "[collect]\nread_timeout_seconds = 0\n",
            "collect.read_timeout_seconds Input should be greater than 0",
        ),
        (
            "[collect]\nrestatement_days = 1.5\n",
            "collect.restatement_days Input should be a valid integer, got a number with a "
            "fractional part",
        ),
        (f'[azure]\nscopes = "{SUBSCRIPTION}"\n', "azure.scopes Input should be a valid list"),
        ('lake = "data/lake"\n', "lake Input should be a valid dictionary"),
        (
            f'[azure]\nscopes = ["{SUBSCRIPTION}/resourceGroups/rg-prod"]\n',
            f"azure.scopes '{SUBSCRIPTION}/resourceGroups/rg-prod' is not a scope of the form "
            "/subscriptions/<guid>",
        ),
        (
            '[azure]\nscopes = ["/providers/Microsoft.Management/managementGroups/mg"]\n',
            "azure.scopes '/providers/Microsoft.Management/managementGroups/mg' is not a scope of "
            "the form /subscriptions/<guid>",
        ),
        (
            '[azure]\nscopes = ["/subscriptions/not-a-guid-at-all-but-36-characters-x"]\n',
            "is not a scope of the form /subscriptions/<guid>",
        ),
        ("[pricing.discounts]\nmde_for_servers = 150\n", "must be a percentage in [0, 100)"),
    ],
)
def test_a_wrong_type_or_scope_in_the_file_is_one_line_naming_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "MDECOST_COLLECT__MAX_RETRIES",
            "many",
            "environment: collect.max_retries Input should be a valid integer",
        ),
        (
            "MDECOST_LAKE_PATH",
            "/data/lake",
            "environment: MDECOST_LAKE_PATH is not a setting; a key inside a section takes a "
            "double underscore: MDECOST_LAKE__PATH",
        ),
        (
            "MDECOST_STORAGE__PATH",
            "/data/lake",
            "environment: MDECOST_STORAGE__PATH names no setting: storage is not a section "
            "(sections: azure, collect, exports, history, lake, pricing, report, tenants, "
            "warehouse)",
        ),
        (
            "MDECOST_AZURE__BOGUS",
            "1",
            "environment: azure.bogus is not a known setting",
        ),
        (
            "MDECOST_AZURE__SCOPES",
            "/subscriptions/s3cr3t-looking-value",
            "environment: MDECOST_AZURE__SCOPES cannot be read: lists and tables are written as "
            "JSON there, e.g. MDECOST_AZURE__SCOPES='[\"/subscriptions/<guid>\"]'",
        ),
    ],
)
def test_a_wrong_environment_variable_is_one_line_naming_it_never_its_value(
    tmp_path, monkeypatch, name, value, message
):
    monkeypatch.chdir(tmp_path)  # no ./mdecost.toml
    monkeypatch.delenv("MDECOST_CONFIG", raising=False)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)
    if name.endswith("SCOPES"):
        assert value not in str(error.value)


def test_variables_that_are_not_settings_are_left_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MDECOST_CONFIG", raising=False)
    monkeypatch.setenv("MDECOST_STATIC_TOKEN", "t")
    monkeypatch.setenv("MDECOST_CHROMIUM", "/usr/bin/chromium")
    assert load_settings().lake.path == Path("data/lake")


runner = CliRunner()


def test_the_cli_prints_a_config_error_as_one_line_and_exits_2(tmp_path):
    path = write(tmp_path, "[collect]\nmax_retries = -1\n")
    result = runner.invoke(app, ["config", "--config", str(path)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {path}: collect.max_retries Input should be greater than or equal to 0"
    ]


def test_the_cli_refuses_a_window_older_than_the_activity_log_in_one_line(tmp_path):
    path = write(tmp_path, '[lake]\npath = "lake"\n')
    result = runner.invoke(
        app,
        ["collect", "--start", "2026-01-01", "--end", "2026-02-01",
         "--as-of", "2026-11-15T12:00:00", "--config", str(path)],
    )  # fmt: skip
    assert result.exit_code == 2
    # 90 days before 2026-11-15 12:00 is 2026-08-17 12:00: the first whole day is the 18th.
    assert result.stderr.splitlines() == [
        "error: --start 2026-01-01 is older than the Activity Log's 90-day retention at "
        "2026-11-15T12:00Z: power events before 2026-08-17T12:00Z can no longer be collected. "
        "Use --start 2026-08-18 or later; power events already in the lake from earlier runs "
        "are kept. Older ones can be read from a Log Analytics workspace or storage account a "
        "diagnostic setting fills: name it in [history]."
    ]
    assert not (tmp_path / "lake").exists()
