"""`mdecost prices refresh` and `mdecost prices show`: what a user sees, and the exit status."""

from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()


def config_file(tmp_path: Path, api, pricing: str = "") -> Path:
    path = tmp_path / "mdecost.toml"
    path.write_text(
        f"""
[azure]
ca_bundle = "{api.ca_bundle}"
[lake]
path = "lake"
[pricing]
retail_prices_endpoint = "{api.base}"
{pricing}
"""
    )
    return path


def test_refresh_reports_pages_trials_and_the_book_changes(retail_api, tmp_path):
    config = config_file(tmp_path, retail_api)
    result = runner.invoke(app, ["prices", "refresh", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "12 item(s) on 3 page(s); 3 trial or zero-priced meter(s) ignored; 9 row(s) stored" in (
        result.output
    )
    changed = [line.split()[:7] for line in result.output.splitlines()]
    assert ["defender_servers_p2", "hourly", "1/Hour", "0.025", "USD", "2026-11-16", "open"] in (
        changed
    )
    # The recorded API lists Plan 2's MDATP benefit meter: the book keeps it as its own option.
    benefit = ["defender_servers_p2_mde_benefit", "hourly", "1/Hour", "0.015", "USD"]
    assert [*benefit, "2024-03-01", "open"] in changed
    again = runner.invoke(app, ["prices", "refresh", "--config", str(config)])
    assert "No price changed: the price book is as it was." in again.output

    shown = runner.invoke(app, ["prices", "show", "--month", "2026-11", "--config", str(config)])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    # November 2026 has both P2 rates in force: 0.02 until the 16th, 0.025 from then.
    assert [line.split()[:7] for line in lines if line.startswith("defender_servers_p2 ")] == [
        ["defender_servers_p2", "hourly", "1/Hour", "0.02", "USD", "2024-01-01", "2026-11-16"],
        ["defender_servers_p2", "hourly", "1/Hour", "0.025", "USD", "2026-11-16", "open"],
    ]


def test_a_failed_refresh_exits_1_and_says_the_book_is_unchanged(retail_api, tmp_path):
    retail_api.responder = lambda path, number: (404, {}, b"not here")
    result = runner.invoke(
        app, ["prices", "refresh", "--config", str(config_file(tmp_path, retail_api))]
    )
    assert result.exit_code == 1
    assert "prices refresh failed: page 1: GET" in result.output
    assert "HTTP 404 Not Found: not here; the price book is unchanged" in result.output


def test_show_applies_discounts_and_seat_prices_and_lists_seats_owned(retail_api, tmp_path):
    config = config_file(
        tmp_path,
        retail_api,
        """seat_option = "defender_business_servers"
[pricing.discounts]
defender_servers_p2 = 15
[pricing.seat_prices]
defender_business_servers = 2.5
[pricing.seats_owned]
mde_for_servers = 40
""",
    )
    result = runner.invoke(app, ["prices", "show", "--config", str(config)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if "  " in line}
    # 15 % off 0.02 = 0.017; the config's seat price replaces the 3.00 list price for all time.
    assert rows["defender_servers_p2"][3] == "0.017"
    assert rows["defender_business_servers"][3:6] == ["2.5", "USD", "1970-01-01"]
    assert "config: [pricing.seat_prices] defender_business_servers" in result.output
    assert "seat option defender_business_servers; seats owned: mde_for_servers 40" in (
        result.output
    )


def test_show_refuses_unknown_options_in_the_config_naming_the_key(retail_api, tmp_path):
    config = config_file(tmp_path, retail_api, "[pricing.discounts]\ndefender_p2 = 15\n")
    result = runner.invoke(app, ["prices", "show", "--config", str(config)])
    assert result.exit_code == 2
    assert "[pricing.discounts] names unknown option(s) defender_p2" in result.output


def test_show_refuses_a_month_that_is_not_yyyy_mm(retail_api, tmp_path):
    config = config_file(tmp_path, retail_api)
    result = runner.invoke(app, ["prices", "show", "--month", "11/2026", "--config", str(config)])
    assert result.exit_code == 2
    assert "--month '11/2026' must look like YYYY-MM" in result.output
