"""The local cluster's PKI (sandbox.localcluster.pki): one CA per cluster, the certificates the components need."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sandbox.localcluster.kubeapi import admin_kubeconfig, token_file_kubeconfig
from sandbox.localcluster.pki import ensure_pki


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    key = ca.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception):
        return False
    return True


def test_every_file_is_private_and_chains_to_the_cluster_ca(tmp_path: Path) -> None:
    files = ensure_pki(tmp_path / "pki", "sandbox-a")
    assert files.complete()
    for path in files.all():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    ca = _cert(files.ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "sandbox-a" in ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    for leaf in (files.apiserver_cert, files.admin_cert):
        assert _signed_by(_cert(leaf), ca)


def test_the_api_server_certificate_names_loopback_and_the_in_cluster_service(tmp_path: Path) -> None:
    files = ensure_pki(tmp_path, "c")
    cert = _cert(files.apiserver_cert)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"} <= set(
        names.get_values_for_type(x509.DNSName)
    )
    assert set(names.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("10.0.0.1"),
    }
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_the_admin_is_a_client_in_system_masters(tmp_path: Path) -> None:
    cert = _cert(ensure_pki(tmp_path, "c").admin_cert)
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]


def test_a_complete_pki_is_kept_and_a_partial_one_replaced_whole(tmp_path: Path) -> None:
    files = ensure_pki(tmp_path, "c")
    first = files.ca_cert.read_bytes()
    assert ensure_pki(tmp_path, "c").ca_cert.read_bytes() == first  # a restart keeps its CA
    files.admin_key.unlink()  # a start killed half-way
    again = ensure_pki(tmp_path, "c")
    assert again.ca_cert.read_bytes() != first
    assert _signed_by(_cert(again.admin_cert), _cert(again.ca_cert))


def test_two_clusters_share_no_ca(tmp_path: Path) -> None:
    one = _cert(ensure_pki(tmp_path / "a", "a").ca_cert)
    two = ensure_pki(tmp_path / "b", "b")
    assert not _signed_by(_cert(two.apiserver_cert), one)


def test_the_admin_kubeconfig_is_self_contained(tmp_path: Path) -> None:
    files = ensure_pki(tmp_path, "c")
    text = admin_kubeconfig(
        "https://127.0.0.1:1234",
        cluster_name="c",
        ca_file=files.ca_cert,
        cert_file=files.admin_cert,
        key_file=files.admin_key,
    )
    doc = yaml.safe_load(text)
    assert doc["current-context"] == "c"
    assert doc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1234"
    assert set(doc["users"][0]["user"]) == {"client-certificate-data", "client-key-data"}
    assert str(tmp_path) not in text  # no file paths: it travels as a terraform output

    import kubernetes.config

    client = kubernetes.config.new_client_from_config_dict(doc, persist_config=False)
    assert client.configuration.host == "https://127.0.0.1:1234"


def test_a_token_file_kubeconfig_refers_to_the_file(tmp_path: Path) -> None:
    doc = yaml.safe_load(
        token_file_kubeconfig(
            "https://127.0.0.1:1", cluster_name="c", ca_file=tmp_path / "ca.crt", token_file=tmp_path / "t", user="u"
        )
    )
    assert doc["users"][0]["user"] == {"tokenFile": str(tmp_path / "t")}
