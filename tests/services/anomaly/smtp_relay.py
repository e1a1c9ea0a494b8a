"""A real SMTP relay for the alert e-mail tests: aiosmtpd (STARTTLS, AUTH, implicit TLS) with a
certificate for 127.0.0.1 issued by a throwaway CA, so the client's verification is exercised as
it would be against a provider's relay."""

from __future__ import annotations

import ipaddress
import logging
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from infra.local.ports import free_port

USER, PASSWORD = "gridsight-alerts", "relay-password-1"
# aiosmtpd logs a deprecation warning of its own on every login and each session's TLS errors.
logging.getLogger("mail.log").setLevel(logging.CRITICAL)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key): a CA, and a server certificate for 127.0.0.1 it signed."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("gridsight test CA"))
        .issuer_name(_name("gridsight test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@dataclass
class Relay:
    """What the relay saw: each accepted message with the session's TLS and login state, and every
    login attempt (user, whether the connection was encrypted when the password arrived)."""

    port: int = 0
    messages: list[tuple[Message, bool, bool]] = field(default_factory=list)  # (mail, tls, authenticated)
    logins: list[tuple[str, bool]] = field(default_factory=list)

    def mails(self) -> list[Message]:
        return [m for m, _, _ in self.messages]


def _encrypted(server: Any, session: Any) -> bool:
    """After STARTTLS aiosmtpd sets session.ssl; with implicit TLS only the transport knows."""
    return session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None


class _Handler:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mail = message_from_bytes(envelope.original_content or envelope.content)
        self.relay.messages.append((mail, _encrypted(server, session), bool(session.authenticated)))
        return "250 OK"


def start_relay(
    folder: Path, *, starttls: bool = True, implicit_tls: bool = False, require_auth: bool = True
) -> tuple[Relay, Controller]:
    """A relay on 127.0.0.1 (free port). starttls: offers STARTTLS; implicit_tls: TLS from the first
    byte (port 465 style). Without either it still accepts AUTH in clear, so a test can prove it is
    the client that refuses to send the password."""
    _, cert, key = (
        make_certificates(folder)
        if not (folder / "ca.pem").exists()
        else (
            folder / "ca.pem",
            folder / "server.pem",
            folder / "server.key",
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    relay = Relay()

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        user, password = data.login.decode(), data.password.decode()
        relay.logins.append((user, _encrypted(server, session)))
        return AuthResult(success=(user, password) == (USER, PASSWORD), handled=False)  # relay answers 535

    options: dict[str, Any] = {
        "authenticator": authenticate,
        "auth_required": require_auth,
        # aiosmtpd counts only STARTTLS as encryption: with implicit TLS it must not insist itself
        "auth_require_tls": starttls and not implicit_tls,
    }
    if starttls and not implicit_tls:
        options["tls_context"] = context
    relay.port = free_port()  # aiosmtpd connects to its own port to start: it needs a real one
    controller = Controller(
        _Handler(relay),
        hostname="127.0.0.1",
        port=relay.port,
        ssl_context=context if implicit_tls else None,
        **options,
    )
    controller.start()
    return relay, controller
