"""PKI and kubeconfig for the local control plane.

Python >= 3.13 verifies with VERIFY_X509_STRICT, so the CA carries a Subject Key Identifier and a
critical basicConstraints, and every leaf an Authority Key Identifier and SANs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=30)
SERVER_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
ADMIN_USER = "modeldeploy-admin"


@dataclass(frozen=True)
class Certs:
    ca: Path
    admin_cert: Path
    admin_key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    usage: list[x509.ObjectIdentifier],
    sans: list[x509.GeneralName],
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def write_pki(dir: Path) -> Certs:
    """CA, apiserver serving cert, admin client cert (system:masters), ServiceAccount key pair."""
    dir.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("modeldeploy-local-ca"))
        .issuer_name(_name("modeldeploy-local-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (dir / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(dir / "ca.key", ca_key)

    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_DNS]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1", "10.96.0.1")]
    server, server_key = _leaf(
        ca_cert, ca_key, _name("kube-apiserver"), [ExtendedKeyUsageOID.SERVER_AUTH], sans
    )
    (dir / "apiserver.crt").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    _write_key(dir / "apiserver.key", server_key)

    admin, admin_key = _leaf(
        ca_cert,
        ca_key,
        _name(ADMIN_USER, "system:masters"),
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        [],
    )
    (dir / "admin.crt").write_bytes(admin.public_bytes(serialization.Encoding.PEM))
    _write_key(dir / "admin.key", admin_key)

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(dir / "sa.key", sa_key)
    (dir / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return Certs(ca=dir / "ca.crt", admin_cert=dir / "admin.crt", admin_key=dir / "admin.key")


def write_kubeconfig(
    path: Path, port: int, certs: Certs, user: str = ADMIN_USER, host: str = "127.0.0.1"
) -> None:
    """A kubeconfig for `certs` (the admin's, or another client pair in the same shape)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "modeldeploy-local",
                "cluster": {
                    "server": f"https://{host}:{port}",
                    "certificate-authority": str(certs.ca),
                },
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(certs.admin_cert),
                    "client-key": str(certs.admin_key),
                },
            }
        ],
        "contexts": [
            {
                "name": "modeldeploy-local",
                "context": {"cluster": "modeldeploy-local", "user": user},
            }
        ],
        "current-context": "modeldeploy-local",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def write_client_cert(dir: Path, stem: str, cn: str, org: str | None = None) -> tuple[Path, Path]:
    """A client certificate signed by the CA in `dir` (e.g. a kubelet's system:node:<name>)."""
    ca_cert = x509.load_pem_x509_certificate((dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((dir / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    cert, key = _leaf(ca_cert, ca_key, _name(cn, org), [ExtendedKeyUsageOID.CLIENT_AUTH], [])
    crt_path, key_path = dir / f"{stem}.crt", dir / f"{stem}.key"
    crt_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return crt_path, key_path
