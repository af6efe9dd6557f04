"""The address policy as pure functions on hostile inputs: no resolver, no request."""

from __future__ import annotations

import ipaddress

import pytest

from collection_operator.config import OperatorSettings, SettingsBuilder, load_settings
from collection_operator.config.address_policy import AddressPolicy, Refusal, check, check_url, normalise, parse_ip

DEFAULT = AddressPolicy()
ip = ipaddress.ip_address


def refused(url: str, addresses: list[str] = (), policy: AddressPolicy = DEFAULT) -> str:  # type: ignore[assignment]
    with pytest.raises(Refusal) as info:
        check_url(url, [ip(a) for a in addresses], policy)
    return str(info.value)


def allowed(url: str, addresses: list[str] = (), policy: AddressPolicy = DEFAULT) -> None:  # type: ignore[assignment]
    check_url(url, [ip(a) for a in addresses], policy)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.169.254./",  # trailing dot
        "http://2852039166/",  # decimal
        "http://0251.0376.0251.0376/",  # octal
        "http://0xa9fea9fe/",  # hex
        "http://0xa9.0xfe.0xa9.0xfe/",
        "http://169.254.43518/",  # a.b.c16 form
        "http://[::ffff:169.254.169.254]/",  # IPv4-mapped IPv6
        "http://[::ffff:a9fe:a9fe]/",
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64
        "http://[::169.254.169.254]/",  # IPv4-compatible
        "http://[2002:a9fe:a9fe::1]/",  # 6to4
        "http://[fe80::1]:6333/",
        "http://[fe80::1%25eth0]:6333/",  # with a zone id
        "http://[fd00:ec2::254]/",  # AWS IMDS over IPv6
        "http://169.254.1.1:6333/",  # any link-local
        "https://100.100.100.200/",  # Alibaba metadata
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.google.internal./",
        "http://0.0.0.0:6333/",
        "http://[::]:6333/",
    ],
)
def test_link_local_metadata_and_unspecified_addresses_are_refused_in_any_spelling(url):
    assert "allow_link_local" in refused(url) or "unspecified" in refused(url) or "metadata" in refused(url)


@pytest.mark.parametrize("address", ["169.254.169.254", "::ffff:169.254.169.254", "fe80::1", "fd00:ec2::254"])
def test_a_name_resolving_to_a_refused_address_is_refused_whatever_the_name(address):
    assert "qdrant.example.com" in refused("http://qdrant.example.com:6333", ["10.0.0.5", address])


def test_userinfo_tricks_are_refused_before_the_host_is_looked_at():
    for url in (
        "http://qdrant@169.254.169.254/",
        "http://user:secret@qdrant.svc:6333",
        "http://127.0.0.1:6333@169.254.169.254/",
        "http://:@qdrant:6333",
    ):
        message = refused(url, ["10.0.0.5"])
        assert "apiKeySecretRef" in message
        assert "secret" not in message


@pytest.mark.parametrize(
    "url", ["ftp://qdrant:6333", "file:///etc/passwd", "gopher://x", "http://", "http://:6333", "http://qdrant:99999"]
)
def test_other_schemes_and_malformed_urls_are_refused(url):
    refused(url, ["10.0.0.5"])


def test_link_local_is_allowed_only_by_the_setting():
    policy = AddressPolicy(allow_link_local=True)
    allowed("http://169.254.169.254/", ["169.254.169.254"], policy)
    allowed("http://metadata.google.internal/", ["169.254.169.254"], policy)
    assert "unspecified" in refused("http://0.0.0.0/", ["0.0.0.0"], policy)


def test_without_an_allow_list_ordinary_addresses_pass():
    allowed("http://127.0.0.1:6333", ["127.0.0.1"])
    allowed("https://qdrant.db.svc:6333", ["10.96.0.12"])
    allowed("http://[::1]:6333", ["::1"])


def test_allow_list_of_cidrs_needs_every_resolved_address_inside():
    policy = AddressPolicy(allowed_hosts=("127.0.0.2/32", "10.20.0.0/16"))
    allowed("http://127.0.0.2:6333", ["127.0.0.2"], policy)
    allowed("http://qdrant.db.svc:6333", ["10.20.3.4"], policy)
    assert "127.0.0.1" in refused("http://127.0.0.1:6333", ["127.0.0.1"], policy)
    assert "10.21.0.1" in refused("http://qdrant.db.svc:6333", ["10.20.3.4", "10.21.0.1"], policy)  # one outside
    refused("http://[::ffff:127.0.0.1]:6333", ["::ffff:127.0.0.1"], policy)
    allowed("http://[::ffff:127.0.0.2]:6333", ["::ffff:127.0.0.2"], policy)  # checked as the IPv4 it carries
    refused("http://2130706433:6333", ["127.0.0.1"], policy)  # decimal 127.0.0.1


def test_allow_list_of_names_and_suffixes():
    policy = AddressPolicy(allowed_hosts=("Qdrant.DB.svc.", ".qdrant.svc.cluster.local"))
    allowed("http://qdrant.db.svc:6333", ["10.0.0.1"], policy)
    allowed("http://qdrant.db.svc.:6333", ["10.0.0.1"], policy)
    allowed("http://a.qdrant.svc.cluster.local:6333", ["10.0.0.1"], policy)
    refused("http://qdrant.db.svc.evil.com:6333", ["10.0.0.1"], policy)
    refused("http://evilqdrant.svc.cluster.local:6333", ["10.0.0.1"], policy)  # suffix matches whole labels only
    refused("http://10.0.0.1:6333", ["10.0.0.1"], policy)  # a name entry never admits a literal address
    # A listed name still may not lead to the metadata service.
    assert "metadata" in refused("http://qdrant.db.svc:6333", ["169.254.169.254"], policy)


def test_allow_list_of_literal_addresses():
    policy = AddressPolicy(allowed_hosts=("127.0.0.2",))
    allowed("http://127.0.0.2:6333", ["127.0.0.2"], policy)
    refused("http://127.0.0.1:6333", ["127.0.0.1"], policy)


def test_a_host_without_addresses_is_refused():
    with pytest.raises(Refusal):
        check("qdrant.db.svc", [], DEFAULT)


def test_parse_ip_decodes_what_the_resolver_decodes_and_nothing_else():
    assert parse_ip("2852039166") == ip("169.254.169.254")
    assert parse_ip("0251.0376.0251.0376") == ip("169.254.169.254")
    assert parse_ip("0x7f.1") == ip("127.0.0.1")
    assert parse_ip("[::1]") == ip("::1")
    assert parse_ip("qdrant.db.svc") is None
    assert parse_ip("1e100.net") is None
    assert parse_ip("999.1.1.1") is None
    assert normalise(ip("::ffff:10.0.0.1")) == ip("10.0.0.1")
    assert normalise(ip("::1")) == ip("::1")


def test_operator_settings_carry_the_policy_to_every_profile():
    settings = load_settings(
        environ={"QDRANT_OPERATOR_ALLOWED_HOSTS": '["127.0.0.2/32"]', "QDRANT_OPERATOR_ALLOW_LINK_LOCAL": "true"}
    )
    assert settings.address_policy == AddressPolicy(allowed_hosts=("127.0.0.2/32",), allow_link_local=True)
    assert settings.profile("Production").address_policy == settings.address_policy
    assert OperatorSettings().address_policy == DEFAULT
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/33"):
        SettingsBuilder().set(allowed_hosts=["10.0.0.0/33"]).build()
