"""TLS for the client API: the node's server context, and a local CA for devnets.

A node serves its API over TLS when its config names ``[api] tls_cert`` and ``tls_key`` (PEM
files); it then serves nothing in plain HTTP on that port (a plain request fails the handshake).
TLS 1.2 at least, with the ``ssl`` module's secure defaults (forward secrecy, AEAD ciphers).

``custos devnet up`` makes a local certificate authority with ``cryptography``'s x509: an ECDSA
P-256 root valid for ten years, whose private key is used once, to sign each node's certificate
(its API address: 127.0.0.1 and localhost), and never written to disk; so nobody can issue more
certificates under it. Clients trust the CA's certificate (``devnet.json`` names the file).
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledger.storage.files import write_atomically
from node.config import ApiSection, ConfigError

VALIDITY_DAYS = 3650


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The API's TLS context from PEM files (raises OSError / ssl.SSLError when unusable)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


@dataclass(frozen=True)
class LocalCA:
    """A CA that lives for one devnet's creation: its key signs the nodes' certificates, then goes."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str) -> LocalCA:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} local CA")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def write_cert(self, path: Path) -> None:
        write_atomically(path, self.cert.public_bytes(serialization.Encoding.PEM), mode=0o644)

    def issue(self, name: str, cert_path: Path, key_path: Path, *, hosts: tuple[str, ...] = ("127.0.0.1",
                                                                                          "localhost")) -> None:
        """A server certificate for ``hosts`` (IP addresses or DNS names), and its key (0600)."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        write_atomically(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()), mode=0o600)
        write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def api_tls_context(api: ApiSection) -> ssl.SSLContext | None:
    """The API's server context from ``[api] tls_cert`` and ``tls_key``; None without them."""
    if api.tls_cert is None or api.tls_key is None:
        return None
    try:
        return server_context(api.tls_cert, api.tls_key)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise ConfigError(f"cannot use the API's TLS certificate {api.tls_cert} and key {api.tls_key}: "
                          f"{reason}") from None
