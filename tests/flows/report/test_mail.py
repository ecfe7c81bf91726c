"""The report by e-mail, received by a real SMTP server on loopback (aiosmtpd), over STARTTLS
with a login: the message arrives with its HTML headline and every file of the report."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from flows.config import ConfigError, EmailSettings
from flows.report.mail import MailError, send_report

PASSWORD_ENV = "MDECOST_TEST_SMTP_PASSWORD"


class Inbox:
    """Keeps what the server received: the envelope and the raw message."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == b"finance-bot"
        and (auth_data.password == b"s3cret-pass")
    )
    return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture()
def smtp_server(tmp_path: Path):
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    inbox = Inbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield inbox, controller, ca_file
    finally:
        controller.stop()


def settings_for(controller, ca_file: Path, **changes) -> EmailSettings:
    values = {
        "host": "127.0.0.1",
        "port": controller.port,
        "sender": "mdecost@contoso.example",
        "recipients": ["finance@contoso.example", "finops@contoso.example"],
        "username": "finance-bot",
        "password_env": PASSWORD_ENV,
        "ca_bundle": ca_file,
        "timeout_seconds": 10,
        **changes,
    }
    return EmailSettings(**values)


def test_the_report_arrives_with_its_headline_and_files(rendered, smtp_server, monkeypatch):
    inbox, controller, ca_file = smtp_server
    monkeypatch.setenv(PASSWORD_ENV, "s3cret-pass")
    sent_to = send_report(rendered, settings_for(controller, ca_file))
    assert sent_to == ["finance@contoso.example", "finops@contoso.example"]
    [(sender, recipients, raw)] = inbox.messages
    assert sender == "mdecost@contoso.example"
    assert recipients == ["finance@contoso.example", "finops@contoso.example"]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == "Defender for Servers cost report, October 2026"
    html = message.get_body(preferencelist=("html",)).get_content()
    # The headline of the hand-made October (conftest): every charge billed, subscription A
    # 16.98 + subscription B 8.99984 = 25.97984, written to the cent.
    assert "<td>month</td>" in html and "October 2026" in html
    assert (
        "<tr><td>billed by Cost Management</td><td style='text-align:right'>25.98 USD</td></tr>"
        in html
    )
    attachments = {part.get_filename(): part.get_content() for part in message.iter_attachments()}
    assert sorted(attachments) == [
        "comparison.csv",
        "comparison.xlsx",
        "licensing_options.csv",
        "report.html",
    ]
    assert attachments["report.html"] == rendered.html.read_text(encoding="utf-8")
    assert attachments["comparison.xlsx"] == rendered.xlsx.read_bytes()
    assert "s3cret-pass" not in raw.decode("utf-8", "replace")


def test_a_wrong_password_is_a_one_line_error_without_it(rendered, smtp_server, monkeypatch):
    inbox, controller, ca_file = smtp_server
    monkeypatch.setenv(PASSWORD_ENV, "wrong-pass")
    with pytest.raises(
        MailError, match=r"SMTP server 127\.0\.0\.1:\d+: SMTPAuthenticationError"
    ) as e:
        send_report(rendered, settings_for(controller, ca_file))
    assert "wrong-pass" not in str(e.value)
    assert inbox.messages == []


def test_a_login_without_its_password_in_the_environment_is_refused(rendered, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    settings = EmailSettings(
        host="127.0.0.1",
        port=25,
        sender="mdecost@contoso.example",
        recipients=["finance@contoso.example"],
        username="finance-bot",
        password_env=PASSWORD_ENV,
    )
    with pytest.raises(ConfigError, match=PASSWORD_ENV):
        send_report(rendered, settings)


def test_the_monthly_deployment_mails_to_the_configured_recipients(
    rendered, smtp_server, monkeypatch, tmp_path
):
    """`[report.email]` in mdecost.toml -> the monthly flow's mail task sends the report."""
    from flows.config import load_settings
    from flows.pipeline import mail_report

    inbox, controller, ca_file = smtp_server
    monkeypatch.setenv(PASSWORD_ENV, "s3cret-pass")
    config = tmp_path / "mdecost.toml"
    config.write_text(
        "[report.email]\n"
        f'host = "127.0.0.1"\nport = {controller.port}\nsender = "mdecost@contoso.example"\n'
        'recipients = ["finance@contoso.example"]\nusername = "finance-bot"\n'
        f'password_env = "{PASSWORD_ENV}"\nca_bundle = "{ca_file}"\ntimeout_seconds = 10\n'
    )
    settings = load_settings(config)
    assert mail_report.fn(settings, rendered) == ["finance@contoso.example"]
    [(_, recipients, _)] = inbox.messages
    assert recipients == ["finance@contoso.example"]


def test_a_recipient_that_is_no_address_is_refused_by_name(tmp_path):
    from flows.config import load_settings

    config = tmp_path / "mdecost.toml"
    config.write_text(
        '[report.email]\nhost = "smtp.contoso.example"\nsender = "mdecost@contoso.example"\n'
        'recipients = ["finance team"]\n'
    )
    with pytest.raises(ConfigError, match=r"report\.email\.recipients 'finance team' is not an"):
        load_settings(config)
