"""The dev cluster's PKI and binary lookup, without starting anything."""

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ferryman_dev import cluster
from ferryman_dev.pki import create_pki


def test_pki_issues_a_loopback_serving_cert_and_a_system_masters_admin(tmp_path: Path) -> None:
    pki = create_pki(tmp_path)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    serving = x509.load_pem_x509_certificate(pki.serving_cert.read_bytes())
    admin = x509.load_pem_x509_certificate(pki.admin_cert.read_bytes())
    for leaf in (serving, admin):
        leaf.verify_directly_issued_by(ca)
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    usage = admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage
    assert pki.sa_private_key.stat().st_mode & 0o077 == 0


def test_pinned_versions_come_from_the_wrapper_modules() -> None:
    assert cluster.pinned_version("kubernetes").startswith("v1.3")
    assert cluster.pinned_version("etcd").startswith("v3.")
    assert cluster.pinned_version("kwok").startswith("v0.")


def test_a_missing_binary_says_how_to_build_it(tmp_path: Path) -> None:
    for component in ("etcd", "kubernetes", "kwok"):
        (tmp_path / "e2e" / "bins" / component).mkdir(parents=True)
        source = cluster.repo_root() / "e2e" / "bins" / component / "go.mod"
        (tmp_path / "e2e" / "bins" / component / "go.mod").write_text(source.read_text())
    with pytest.raises(cluster.ClusterError, match=r"kube-apiserver is missing: run `make cluster-bins`"):
        cluster.binary("kube-apiserver", root=tmp_path)
