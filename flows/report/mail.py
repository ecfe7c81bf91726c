"""The finance report by e-mail: an HTML body with the month's headline, the files attached.

Sent with the standard library's `smtplib` to `[report.email]` (host, port, STARTTLS, sender,
recipients); the password comes from the environment variable named by `password_env` and is
never logged or written. A server that does not offer STARTTLS when it is asked for is refused
(no silent fall back to plain text), and so is a login without a password.
"""

from __future__ import annotations

import mimetypes
import os
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from html import escape

from flows.config import ConfigError, EmailSettings
from flows.report.render import ReportPaths
from flows.report.summary import summary_lines


class MailError(RuntimeError):
    """The report could not be sent; the message names the server and what went wrong."""


def report_message(paths: ReportPaths, settings: EmailSettings) -> EmailMessage:
    """The message for `paths`: the headline as an HTML table (and as text), every file of the
    report attached."""
    data = paths.data
    lines = summary_lines(data)
    status = "" if data.month_complete else " (month to date)"
    subject = f"Defender for Servers cost report, {data.month:%B %Y}{status}"
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.recipients)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=settings.sender.rpartition("@")[2])
    text = "\n".join(f"{measure}: {value}" for measure, value in lines)
    message.set_content(f"{subject}\n\n{text}\n\nThe report and its tables are attached.\n")
    rows = "".join(
        f"<tr><td>{escape(measure)}</td><td style='text-align:right'>{escape(value)}</td></tr>"
        for measure, value in lines
    )
    message.add_alternative(
        f"<html><body><h1 style='font-size:18px'>{escape(subject)}</h1>"
        f"<table cellpadding='4' style='border-collapse:collapse'>{rows}</table>"
        "<p>The full report (report.html) and its tables are attached.</p></body></html>",
        subtype="html",
    )
    for path in paths.files:
        kind, _ = mimetypes.guess_type(path.name)
        maintype, subtype = (kind or "application/octet-stream").split("/", 1)
        # Bytes (base64), so the files arrive as written; report.html and the CSVs say UTF-8.
        message.add_attachment(
            path.read_bytes(),
            maintype=maintype,
            subtype=subtype,
            filename=path.name,
            params={"charset": "utf-8"} if maintype == "text" else {},
        )
    return message


def _password(settings: EmailSettings) -> str | None:
    if settings.username is None:
        return None
    if not settings.password_env or not os.environ.get(settings.password_env):
        raise ConfigError(
            f"report.email: username {settings.username!r} needs a password in the environment "
            f"variable named by password_env ({settings.password_env or 'not set'})"
        )
    return os.environ[settings.password_env]


def send_report(paths: ReportPaths, settings: EmailSettings) -> list[str]:
    """Send the report to `settings.recipients`; returns them. Raises MailError (the server and
    its answer, never the password) or ConfigError (a login without its password)."""
    password = _password(settings)
    message = report_message(paths, settings)
    server = f"{settings.host}:{settings.port}"
    try:
        with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_seconds) as smtp:
            smtp.ehlo()
            if settings.starttls:
                if not smtp.has_extn("starttls"):
                    raise MailError(
                        f"SMTP server {server} does not offer STARTTLS; the report is not sent "
                        "in clear text (set [report.email] starttls = false only for a server "
                        "on a trusted network)"
                    )
                cafile = str(settings.ca_bundle) if settings.ca_bundle else None
                smtp.starttls(context=ssl.create_default_context(cafile=cafile))
                smtp.ehlo()
            if settings.username is not None and password is not None:
                smtp.login(settings.username, password)
            refused = smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as error:
        raise MailError(f"SMTP server {server}: {type(error).__name__}: {error}") from None
    if refused:
        raise MailError(f"SMTP server {server} refused {', '.join(sorted(refused))}")
    return list(settings.recipients)
