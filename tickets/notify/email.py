"""E-mail notifier: one message per notice over SMTP, optionally with STARTTLS
and authentication.

The ``Message-ID`` is derived from the notice's idempotency key, so when the
outbox retries a send that did in fact arrive (the connection broke after the
server took the message), the copy carries the same id and mail clients and
archives can fold the two together. SMTP's own reply classes decide
retryability: 4xx means "try again later", 5xx means "this will not work".
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from tickets.notify.base import Notice, NotifyError

CHANNEL = "email"


def message_id(key: str, domain: str) -> str:
    """``<hex@domain>`` from the idempotency key; a hash because the key may
    hold characters a Message-ID may not."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
    return f"<ticket-notice.{digest}@{domain}>"


def _reply_retryable(code: int) -> bool:
    """SMTP replies 4xx are transient, 5xx permanent (RFC 5321 section 4.2.1)."""
    return 400 <= code < 500


class EmailNotifier:
    """Sends each notice as one UTF-8 plain-text e-mail to a fixed list."""

    name = CHANNEL

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: list[str],
        starttls: bool,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not recipients:
            raise ValueError("email notifier needs at least one recipient")
        self.host = host
        self.port = port
        self.sender = sender
        self.recipients = list(recipients)
        self.starttls = starttls
        self.username = username
        self.password = password
        self.timeout = timeout
        # Verifies the server's certificate and name by default; pass a context
        # trusting a private CA for a campus relay with its own certificate.
        self._ssl = ssl_context or ssl.create_default_context()
        self._domain = sender.rpartition("@")[2] or "campus.invalid"

    def build(self, notice: Notice) -> EmailMessage:
        """The message for ``notice`` (the same headers for every retry but Date)."""
        msg = EmailMessage()
        msg["Subject"] = notice.title
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = message_id(notice.key, self._domain)
        msg["X-Campus-Ticket"] = str(notice.ticket_id)
        msg["X-Campus-Event"] = notice.event
        msg["X-Campus-Severity"] = notice.severity
        # RFC 3834: keeps out-of-office replies from answering an alert robot.
        msg["Auto-Submitted"] = "auto-generated"
        msg["Content-Language"] = "zh-CN" if notice.language == "zh" else "en"
        if notice.severity == "P1":
            msg["Importance"] = "high"
            msg["X-Priority"] = "1"
        msg.set_content(notice.body, charset="utf-8")
        return msg

    def send(self, notice: Notice) -> None:
        """Hand the message to the SMTP server; raise :class:`NotifyError` unless
        every recipient was accepted."""
        msg = self.build(notice)
        where = f"{self.host}:{self.port}"
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                if self.starttls:
                    if not smtp.has_extn("starttls"):
                        raise NotifyError(
                            CHANNEL,
                            f"{where} does not offer STARTTLS; refusing to send in clear",
                            retryable=False,
                        )
                    smtp.starttls(context=self._ssl)
                    smtp.ehlo()
                if self.username:
                    smtp.login(self.username, self.password or "")
                refused = smtp.send_message(msg, self.sender, self.recipients)
        except smtplib.SMTPRecipientsRefused as exc:
            raise self._refused(where, exc.recipients) from exc
        except smtplib.SMTPResponseException as exc:
            # Covers 535 authentication failed, sender refused, data refused.
            text = (
                exc.smtp_error.decode("utf-8", "replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            raise NotifyError(
                CHANNEL,
                f"{where} answered {exc.smtp_code} {text}",
                retryable=_reply_retryable(exc.smtp_code),
            ) from exc
        except smtplib.SMTPServerDisconnected as exc:
            raise NotifyError(
                CHANNEL, f"{where} closed the connection: {exc}", retryable=True
            ) from exc
        except smtplib.SMTPException as exc:  # AUTH not offered, no mechanism in common
            raise NotifyError(CHANNEL, f"{where}: {exc}", retryable=False) from exc
        except UnicodeEncodeError as exc:  # smtplib's AUTH encodes credentials as ASCII
            raise NotifyError(
                CHANNEL, f"{where}: username and password must be ASCII ({exc})", retryable=False
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            raise NotifyError(
                CHANNEL, f"{where} certificate not trusted: {exc}", retryable=False
            ) from exc
        except TimeoutError as exc:
            raise NotifyError(
                CHANNEL, f"{where} did not answer within {self.timeout:g} s", retryable=True
            ) from exc
        except OSError as exc:  # refused, unreachable, reset, TLS broken mid-way
            # (smtplib's exceptions are OSErrors too: they are caught above)
            raise NotifyError(CHANNEL, f"{where} unreachable: {exc}", retryable=True) from exc
        if refused:
            raise self._refused(where, refused)

    @staticmethod
    def _refused(where: str, refused: dict[str, tuple[int, bytes]]) -> NotifyError:
        """One error for the refused recipients; retryable only when every
        refusal was temporary. A retry goes to all recipients again, with the
        same Message-ID."""
        parts = [
            f"{rcpt} ({code} {reply.decode('utf-8', 'replace')})"
            for rcpt, (code, reply) in refused.items()
        ]
        return NotifyError(
            CHANNEL,
            f"{where} refused recipients: {', '.join(parts)}",
            retryable=all(_reply_retryable(code) for code, _ in refused.values()),
        )
