"""A local cluster's own certificate authority, serving and client certificates, and service-account keys.

Each cluster gets a fresh CA, so a client of one local cluster can never talk to another one by mistake (two
clusters side by side share no key, and the API server's certificate is checked against the cluster's CA). Files,
all written 0600 into ``<dir>/pki``:

* ``ca.crt`` / ``ca.key``: the cluster CA (also kube-controller-manager's signing CA for CSRs);
* ``apiserver.crt`` / ``apiserver.key``: the API server's serving certificate for ``localhost``, ``127.0.0.1`` and
  the in-cluster names (``kubernetes.default.svc``..., ``10.0.0.1``, the first address of the service range);
* ``admin.crt`` / ``admin.key``: a client certificate in group ``system:masters`` (cluster-admin, which bootstrap
  needs: it creates CRDs, ClusterRoles and their bindings);
* ``sa.key`` / ``sa.pub``: the key pair that signs and verifies service-account tokens.

Keys are ECDSA P-256: every Kubernetes component accepts them, and generating one takes a millisecond (an RSA
key takes a noticeable fraction of a second on a loaded machine, and a cluster needs four).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sandbox.localcluster.processes import write_atomically

#: How long the certificates are valid: far longer than any sandbox lives, short enough to be obviously local.
VALIDITY = datetime.timedelta(days=30)
#: The service network's first address: where in-cluster clients reach the API server (``kubernetes.default``).
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
API_SERVICE_IP = "10.0.0.1"

_API_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class PkiFiles:
    """Where a cluster's certificates and keys are (all PEM)."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def apiserver_cert(self) -> Path:
        return self.root / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.root / "apiserver.key"

    @property
    def admin_cert(self) -> Path:
        return self.root / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.root / "admin.key"

    @property
    def sa_key(self) -> Path:
        return self.root / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.root / "sa.pub"

    def all(self) -> tuple[Path, ...]:
        """Every file, in the order they are written."""
        return (
            self.ca_cert,
            self.ca_key,
            self.apiserver_cert,
            self.apiserver_key,
            self.admin_cert,
            self.admin_key,
            self.sa_key,
            self.sa_pub,
        )

    def complete(self) -> bool:
        """Whether every file exists (a cluster restarted after a crash keeps its PKI)."""
        return all(path.is_file() for path in self.all())


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    # Backdated a little: a component whose clock reads a moment earlier must not see a future certificate.
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def create_ca(cluster_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA certificate and key for ``cluster_name``."""
    key = _key()
    name = _name(f"fleet-sandbox-local-{cluster_name}-ca")
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    common_name: str,
    organization: str | None = None,
    server: bool = False,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate signed by the CA: a serving certificate (``server``) or a client one."""
    key = _key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(_name(common_name, organization), ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if dns_names or ip_addresses:
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def ensure_pki(root: Path, cluster_name: str) -> PkiFiles:
    """Create the cluster's PKI in ``root`` unless it is already complete; return where the files are.

    A partial PKI (a start killed half-way) is replaced whole: certificates from two CAs must never mix.
    """
    files = PkiFiles(root)
    if files.complete():
        return files
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_cert, ca_key = create_ca(cluster_name)
    api_cert, api_key = issue(
        ca_cert,
        ca_key,
        common_name="kube-apiserver",
        server=True,
        dns_names=_API_DNS_NAMES,
        ip_addresses=("127.0.0.1", API_SERVICE_IP),
    )
    admin_cert, admin_key = issue(ca_cert, ca_key, common_name="fleet-sandbox-admin", organization="system:masters")
    sa_key = _key()
    sa_pub = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # The CA certificate goes last: complete() is true only once everything else is in place.
    contents = [
        (files.ca_key, _key_pem(ca_key)),
        (files.apiserver_cert, _cert_pem(api_cert)),
        (files.apiserver_key, _key_pem(api_key)),
        (files.admin_cert, _cert_pem(admin_cert)),
        (files.admin_key, _key_pem(admin_key)),
        (files.sa_key, _key_pem(sa_key)),
        (files.sa_pub, sa_pub.decode()),
        (files.ca_cert, _cert_pem(ca_cert)),
    ]
    files.ca_cert.unlink(missing_ok=True)
    for path, text in contents:
        write_atomically(path, text)
    return files
