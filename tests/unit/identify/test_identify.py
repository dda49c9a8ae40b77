"""Who is browsing: a client address becomes a group by longest-prefix match over every group's
subnets, falling back to the default group. And `schoolgate.identify` stays pure: no files, no
network, no proxy, no store."""

from __future__ import annotations

import ast
import ipaddress
from pathlib import Path

import pytest

import schoolgate.identify
from sample_school import BASE_CONFIG, EXAMPLE_CONFIG, replace_once
from schoolgate.config.loader import load_config
from schoolgate.identify import Identity, SubnetGroups, normalise_ip
from schoolgate.identify.maps import IpUserMap

IDENTIFY = Path(schoolgate.identify.__file__).parent


@pytest.mark.parametrize(
    ("client_ip", "group", "source", "shown_ip"),
    [
        # Sixth form's 10.20.50.0/24 sits inside secondary's 10.20.0.0/16: the /24 wins, at both
        # of its edges, and the /16 keeps everything around it.
        ("10.20.50.3", "sixth_form", "subnet", "10.20.50.3"),
        ("10.20.50.0", "sixth_form", "subnet", "10.20.50.0"),
        ("10.20.50.255", "sixth_form", "subnet", "10.20.50.255"),
        ("10.20.49.255", "secondary", "subnet", "10.20.49.255"),
        ("10.20.51.0", "secondary", "subnet", "10.20.51.0"),
        ("10.20.0.1", "secondary", "subnet", "10.20.0.1"),
        # Other groups' own subnets.
        ("10.10.7.7", "primary", "subnet", "10.10.7.7"),
        ("10.30.255.254", "staff", "subnet", "10.30.255.254"),
        ("172.16.0.9", "guest", "subnet", "172.16.0.9"),
        # IPv6: staff has fd00:30::/32.
        ("fd00:30::1", "staff", "subnet", "fd00:30::1"),
        ("fd00:30:ffff:ffff::1", "staff", "subnet", "fd00:30:ffff:ffff::1"),
        ("FD00:0030:0000::0001", "staff", "subnet", "fd00:30::1"),
        ("fd00:31::1", "guest", "default", "fd00:31::1"),
        # A zone index (link-local on a named interface) is not part of the address.
        ("fe80::1%eth0", "guest", "default", "fe80::1"),
        # Dual-stack sockets report IPv4 clients as IPv4-mapped IPv6: same groups, shown as IPv4.
        ("::ffff:10.20.50.3", "sixth_form", "subnet", "10.20.50.3"),
        ("::ffff:10.20.1.1", "secondary", "subnet", "10.20.1.1"),
        ("::ffff:10.30.0.1", "staff", "subnet", "10.30.0.1"),
        ("::ffff:8.8.8.8", "guest", "default", "8.8.8.8"),
        # In no subnet: the default group.
        ("8.8.8.8", "guest", "default", "8.8.8.8"),
        ("10.21.0.1", "guest", "default", "10.21.0.1"),
        ("127.0.0.1", "guest", "default", "127.0.0.1"),
        ("2001:db8::1", "guest", "default", "2001:db8::1"),
    ],
)
def test_sample_school_groups(config, client_ip, group, source, shown_ip):
    assert SubnetGroups(config).identify(client_ip) == Identity(
        ip=shown_ip, group=group, source=source
    )


@pytest.mark.parametrize(
    ("client_ip", "group"),
    [
        # The example config: the sixth-form block nested in key stage 4, as its comments say.
        ("10.21.50.3", "sixth_form"),
        ("::ffff:10.21.50.3", "sixth_form"),
        ("10.21.9.9", "ks4"),
        ("10.20.9.9", "ks3"),
        ("10.10.0.1", "primary"),
        ("172.17.3.4", "byod"),
        ("fd00:30::abcd", "staff"),
        ("192.0.2.1", "guest"),
    ],
)
def test_example_config_groups(client_ip, group):
    assert SubnetGroups(load_config(EXAMPLE_CONFIG)).identify(client_ip).group == group


def test_most_specific_wins_whatever_the_order_in_the_file(make_config):
    # The /24 group comes first and the /8 group last: order in the file must not matter.
    text = replace_once(
        BASE_CONFIG,
        "groups:\n",
        "groups:\n"
        "  lab:\n    subnets: [10.20.50.128/25]\n    blocked_categories: []\n",
    )
    text = replace_once(
        text,
        "default_group: guest",
        "  site:\n    subnets: [10.0.0.0/8]\n    blocked_categories: [gambling]\n"
        "default_group: guest",
    )
    groups = SubnetGroups(make_config(text))
    assert groups.identify("10.20.50.200").group == "lab"  # /25 inside /24 inside /16 inside /8
    assert groups.identify("10.20.50.100").group == "sixth_form"  # /24 (the /25 is .128-.255)
    assert groups.identify("10.20.1.1").group == "secondary"  # /16
    assert groups.identify("10.99.1.1").group == "site"  # /8 only
    assert groups.identify("11.0.0.1").group == "guest"  # nothing: default


def test_default_group_is_used_when_no_group_has_subnets(make_config):
    text = (
        "categories:\n  gambling: [lists/gambling]\n"
        "groups:\n  everyone:\n    blocked_categories: [gambling]\n"
        "  staff:\n    blocked_categories: []\n"
        "default_group: staff\n"
    )
    identity = SubnetGroups(make_config(text)).identify("10.1.2.3")
    assert identity == Identity(ip="10.1.2.3", group="staff", source="default")
    assert identity.user is None and identity.device is None


@pytest.mark.parametrize("bad", ["", "10.20.300.1", "not-an-ip", "10.20.50.3/24", "::ffff:zz"])
def test_unparseable_client_address_raises(config, bad):
    # The Identify addon turns this into a fail-closed block (test_addons).
    with pytest.raises(ValueError):
        SubnetGroups(config).identify(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1", ipaddress.IPv4Address("10.0.0.1")),
        ("::ffff:10.0.0.1", ipaddress.IPv4Address("10.0.0.1")),
        ("::ffff:a00:1", ipaddress.IPv4Address("10.0.0.1")),  # the same, in hex
        ("fe80::1%wlan0", ipaddress.IPv6Address("fe80::1")),
        ("::1", ipaddress.IPv6Address("::1")),
        # IPv4-compatible (deprecated, no ffff) is not IPv4-mapped: it stays IPv6.
        ("::10.0.0.1", ipaddress.IPv6Address("::a00:1")),
    ],
)
def test_normalise_ip(text, expected):
    assert normalise_ip(text) == expected


# What identification must never reach for: the network, files, the store, the proxy, the loaders.
FORBIDDEN_MODULES = ("yaml", "ldap3", "mitmproxy", "schoolgate.store", "schoolgate.sources",
                     "urllib.request", "http.client", "socket")
FORBIDDEN_CALLS = ("open", "read_text", "read_bytes")


def _imported_modules(tree: ast.Module, package: str) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", sorted(IDENTIFY.glob("**/*.py")), ids=lambda p: p.name)
def test_identify_is_pure(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = "schoolgate." + ".".join(path.relative_to(IDENTIFY.parent).parent.parts)
    bad = sorted(m for m in _imported_modules(tree, package)
                 if any(m == f or m.startswith(f + ".") for f in FORBIDDEN_MODULES))
    assert bad == [], f"{path.name} imports {bad}"
    calls = sorted(
        {n.func.id if isinstance(n.func, ast.Name) else n.func.attr
         for n in ast.walk(tree) if isinstance(n, ast.Call)
         and isinstance(n.func, ast.Name | ast.Attribute)}
        & set(FORBIDDEN_CALLS))
    assert calls == [], f"{path.name} calls {calls}"


def test_pushed_entries_are_what_another_map_needs_to_answer_the_same():
    now = [1000.0]
    source = IpUserMap(clock=lambda: now[0])
    source.set("10.0.0.1", "SCHOOL\\Alice", 600)
    source.set("10.0.0.2", "bob", 10)
    source.forget("10.0.0.3")  # nothing there: nothing to pass on
    now[0] += 9.5  # bob's entry has half a second left: too little to pass on
    entries = source.pushed_entries()
    assert entries == [("10.0.0.1", "alice", 590.5)]
    copy = IpUserMap(clock=lambda: 5.0)  # another process's clock
    for ip, user, ttl in entries:
        copy.set(ip, user, ttl)
    assert copy.get("10.0.0.1") == "alice" and copy.expires("10.0.0.1") == 595.5
    assert copy.get("10.0.0.2") is None
