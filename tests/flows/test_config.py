"""Configuration: the keys the CLI honours, and one-line errors that name what is wrong."""

from pathlib import Path

import pytest

from flows.config import ConfigError, load_settings

SUBSCRIPTION = "/subscriptions/00000000-0000-0000-0000-000000000001"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mdecost.toml"
    path.write_text(text)
    return path


def test_every_documented_key_is_read(tmp_path, monkeypatch):
    monkeypatch.delenv("MDECOST_STATIC_TOKEN", raising=False)
    path = write(
        tmp_path,
        f"""
[azure]
arm_endpoint = "https://127.0.0.1:8443/"
ca_bundle = "ca.pem"
credential = "static_token"
static_token = "t0ken"
scopes = ["{SUBSCRIPTION.upper().replace("SUBSCRIPTIONS", "subscriptions")}"]
[lake]
path = "lake"
[warehouse]
path = "/abs/wh.duckdb"
[pricing]
currency = "eur"
seat_option = "defender_business_servers"
retail_prices_endpoint = "https://127.0.0.1:8443/api/retail/prices"
[pricing.seat_prices]
mde_for_servers = 4.5
""",
    )
    settings = load_settings(path)
    assert settings.azure.arm_endpoint == "https://127.0.0.1:8443"
    assert settings.azure.ca_bundle == tmp_path / "ca.pem"
    assert settings.azure.scopes == [SUBSCRIPTION]
    assert settings.lake.path == tmp_path / "lake"
    assert settings.warehouse.path == Path("/abs/wh.duckdb")
    assert settings.pricing.currency == "EUR"
    assert settings.pricing.seat_option == "defender_business_servers"
    assert settings.pricing.seat_prices == {"mde_for_servers": 4.5}
    assert settings.static_token() == "t0ken"
    assert "t0ken" not in repr(settings)


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, '[lake]\npath = "from-file"\n')
    monkeypatch.setenv("MDECOST_LAKE__PATH", "/from/env")
    monkeypatch.setenv("MDECOST_STATIC_TOKEN", "env-token")
    settings = load_settings(path)
    assert settings.lake.path == Path("/from/env")
    assert settings.static_token() == "env-token"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[azure]\nbogus = 1\n", "azure.bogus is not a known setting"),
        ("[nonsense]\nx = 1\n", "nonsense is not a known setting"),
        ("[pricing]\ncurrency = 5\n", "pricing.currency"),
        ('[azure]\nscopes = ["sub-1"]\n', "'sub-1' is not a scope of the form /subscriptions/"),
        ('[azure]\ncredential = "password"\n', "azure.credential"),
        ('[azure]\narm_endpoint = "http://127.0.0.1:80"\n', "must be an https:// URL"),
        ("[azure\n", "is not valid TOML"),
        (
            '[azure]\ncredential = "static_token"\n',
            "'static_token' is for emulators only and is refused for https://management.azure.com",
        ),
    ],
)
def test_a_wrong_setting_is_a_one_line_error_naming_it(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"config file .*absent.toml does not exist"):
        load_settings(tmp_path / "absent.toml")
