"""The small traps of issue 13: each was a traceback or a silent acceptance, each is now a
one-line refusal or handled. Inputs are made up here; expected messages read off the input."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.config import ConfigError, Settings, load_settings
from flows.lake import partition_path
from flows.locks import held_exclusively
from flows.pipeline import LAST_REFRESH_FILE, read_last_refresh, write_last_refresh

runner = CliRunner()
GUID = "00000000-0000-4000-8000-000000000001"
EXPORTS = Path(__file__).parents[1] / "fixtures" / "exports"


# --- configuration files that are no files, or no text ----------------------------------------
def test_a_config_path_that_is_a_directory_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as refused:
        load_settings(tmp_path)
    assert str(refused.value) == (
        f"config file {tmp_path} is a directory; give the mdecost.toml in it"
    )


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path):
    latin1 = tmp_path / "mdecost.toml"
    latin1.write_bytes('[report]\npath = "Berichte/März"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as refused:
        load_settings(latin1)
    # "ä" is byte 0xe4 in Latin-1, the 28th byte of the file (offset 27).
    assert str(refused.value) == (
        f"config file {latin1} is not UTF-8 text (byte 27); TOML files are UTF-8"
    )
    cli = runner.invoke(app, ["config", "--config", str(latin1)])
    assert (cli.exit_code, cli.output.count("\n")) == (2, 1)


# --- whole-string patterns: scopes and partition values ---------------------------------------
@pytest.mark.parametrize(
    "scope",
    [
        f"/subscriptions/{GUID}\n",  # a trailing newline passed `$`
        "/subscriptions/" + "-" * 36,  # 36 dashes are no GUID
        "/subscriptions/" + "0" * 36,
        f"/subscriptions/{GUID}/resourceGroups/rg",
    ],
)
def test_a_scope_must_be_a_whole_subscription_guid(scope):
    with pytest.raises(ValueError, match="is not a scope of the form /subscriptions/<guid>"):
        Settings(azure={"scopes": [scope]})


def test_a_real_guid_scope_is_accepted():
    assert Settings(azure={"scopes": [f"/subscriptions/{GUID.upper()}"]}).azure.scopes == [
        f"/subscriptions/{GUID}"
    ]


@pytest.mark.parametrize("value", ["2026-10\n", "..", "2026-10/x", ""])
def test_a_partition_value_must_be_a_whole_safe_name(tmp_path, value):
    with pytest.raises(ValueError, match="partition value month="):
        partition_path(tmp_path, "costs", {"month": value})


# --- last_refresh.json ---------------------------------------------------------------------------
def test_an_empty_last_refresh_record_is_ignored_not_a_traceback(tmp_path, caplog):
    settings = Settings(lake={"path": tmp_path / "lake"})
    record = tmp_path / "lake" / LAST_REFRESH_FILE
    record.parent.mkdir(parents=True)
    record.write_text("")  # what a crash between create and write left
    assert read_last_refresh(settings) is None
    assert "cannot be read" in caplog.text
    instant = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
    write_last_refresh(settings, instant)
    assert json.loads(record.read_text()) == {"as_of": "2026-11-20T03:00:00+00:00"}
    assert read_last_refresh(settings) == instant
    assert [path.name for path in record.parent.iterdir()] == ["last_refresh.json"]


# --- months no data can have ----------------------------------------------------------------
@pytest.mark.parametrize("command", [["report"], ["prices", "show"]])
@pytest.mark.parametrize("month", ["9999-12", "1999-01"])
def test_a_month_outside_what_cost_data_can_have_is_one_line(tmp_path, monkeypatch, command, month):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*command, "--month", month])
    latest = datetime.now(UTC).year + 1
    assert result.exit_code == 2, result.output
    assert result.output == (
        f"error: --month {month} is outside 2010-01..{latest}-12, where cost data can be\n"
    )


# --- a lock file another user owns ------------------------------------------------------------
NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another user")
def test_a_lock_file_another_user_created_still_locks(tmp_path):
    shared = Path("/tmp") / f"mdecost-shared-{os.getpid()}-{tmp_path.name}"
    shared.mkdir(mode=0o755)
    try:
        lock = shared / ".lock"
        # Created by this user (root): 0644, so `nobody` can read it but not write it.
        with held_exclusively(lock, 1, RuntimeError, holders="test"):
            pass
        assert stat.S_IMODE(lock.stat().st_mode) & 0o044 == 0o044
        child = os.fork()
        if child == 0:  # as `nobody`: no write access to the lock file, read access only
            try:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                with held_exclusively(lock, 1, RuntimeError, holders="test"):
                    os._exit(0)
            except BaseException:
                os._exit(1)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        for path in shared.iterdir():
            path.unlink()
        shared.rmdir()


def test_a_lock_that_cannot_be_opened_is_the_busy_error_naming_it(tmp_path):
    lock = tmp_path / "not-a-file"
    lock.mkdir()  # a folder where the lock file should be: no one can open it as a file
    with pytest.raises(RuntimeError) as refused, held_exclusively(lock, 1, RuntimeError, "test"):
        pass
    assert str(refused.value).startswith(f"cannot open the lock {lock} (")


# --- files holding cost data are the owner's only ---------------------------------------------
def test_what_the_command_writes_is_created_for_its_owner_only(tmp_path):
    lake = tmp_path / "lake"
    env = {**os.environ, "MDECOST_LAKE__PATH": str(lake)}
    mdecost = Path(sys.executable).with_name("mdecost")
    sample = EXPORTS / "EA_ActualCost_Small.csv"
    result = subprocess.run(
        [str(mdecost), "import-costs", str(sample)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    written = [lake, *lake.rglob("*")]
    assert written
    for path in written:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.name == ".lock":
            continue  # holds nothing; 0644 so another user's run can lock it too
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
