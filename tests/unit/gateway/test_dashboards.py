"""Dashboards and alert rules are code, checked like code: every dashboard in `dashboards/` is valid
JSON with its fixed uid, the shared tag and the `${datasource}` variable on every query; panels do
not overlap; no query, legend or alert names a label that could carry personal data; every metric
a query or rule uses is one the gateway exports (or is listed below as coming soon); every alert
has a "not yet" and a "now" promtool test. tests/e2e/test_prometheus.py runs every query against
a real Prometheus.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sample_school import BASE_CONFIG, REPO
from schoolgate.gateway.service import Gateway

REPO = REPO
DASHBOARDS = REPO / "dashboards"
RULES = DASHBOARDS / "rules" / "schoolgate.rules.yml"
RULE_TESTS = sorted((DASHBOARDS / "rules" / "tests").glob("*.yml"))

#: One dashboard per audience, each with a uid that never changes (links and bookmarks use it).
UIDS = {
    "operations.json": "schoolgate-operations",
    "safeguarding.json": "schoolgate-safeguarding",
    "capacity.json": "schoolgate-capacity",
}
TAG = "schoolgate"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

#: Metrics the dashboards and rules already use but the gateway does not export yet, and what
#: will export them. When one appears in the gateway's output, a test below fails: delete it here
#: (and from PENDING_METRICS in tests/e2e/test_prometheus.py).
COMING_SOON: dict[str, str] = {}

#: Series Prometheus makes itself for every target.
PROMETHEUS_MADE = {"up"}

#: Parts of a label name that mean it could hold personal data (DESIGN.md: bounded labels only,
#: never a user, IP, host or URL). Checked per `_`-separated part: `client_ip` has `ip`.
PERSONAL = {"user", "username", "email", "ip", "addr", "address", "host", "hostname", "url",
            "uri", "path", "device", "mac", "term", "search", "query"}


# ---------------------------------------------------------------------------------------------
# What the files hold


def _load(name: str) -> dict:
    return json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))


def _panels(dashboard: dict) -> list[dict]:
    """Every panel, including those inside collapsed rows; rows themselves excluded."""
    out = []
    for p in dashboard["panels"]:
        if p["type"] == "row":
            out.extend(p.get("panels", []))
        else:
            out.append(p)
    return out


def _queries(dashboard: dict) -> list[tuple[str, dict]]:
    """(where, target-like dict with `expr`) for panel targets and Prometheus annotations."""
    found = [(f"panel {p['title']!r} target {t['refId']}", t)
             for p in _panels(dashboard) for t in p.get("targets", [])]
    found += [(f"annotation {a['name']!r}", a)
              for a in dashboard["annotations"]["list"] if "expr" in a]
    return found


def _rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"]]


ALL = {name: _load(name) for name in UIDS}
QUERIES = [(f"{name}: {where}", t) for name, d in ALL.items() for where, t in _queries(d)]
VARIABLE_QUERIES = [(f"{name}: variable ${v['name']}", v)
                    for name, d in ALL.items() for v in d["templating"]["list"]
                    if v["type"] == "query"]


# ---------------------------------------------------------------------------------------------
# A small PromQL reader: enough to find metric and label names, and tested below so a bug in it
# cannot quietly pass everything.

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{([^}]*)\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_WORD = re.compile(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
             "unless", "offset", "inf", "nan", "atan2"}
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.*),\s*)?(\w+)\s*\)\s*$")


def metric_names(expr: str) -> set[str]:
    e = _STRING.sub('""', expr)
    e = _MATCHERS.sub("", e)
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges, subqueries
    e = _GROUPING.sub("", e)
    names = set()
    for m in _WORD.finditer(e):
        if m.group().lower() in _KEYWORDS or e[m.end():].lstrip().startswith("("):
            continue  # a keyword or a function
        names.add(m.group())
    return names


def label_names(expr: str) -> set[str]:
    e = _STRING.sub('""', expr)
    names = set()
    for body in _MATCHERS.findall(e):
        names.update(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", body))
    for body in _GROUPING.findall(e):
        names.update(n.strip() for n in body.split(",") if n.strip())
    return names


def template_labels(text: str) -> set[str]:
    """Labels named by a Grafana legend (`{{instance}}`) or an alert template (`$labels.list`)."""
    return set(re.findall(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}", text)) | set(
        re.findall(r"\$labels\.([A-Za-z_]\w*)", text))


def variable_query(v: dict) -> str:
    q = v["query"]
    return q["query"] if isinstance(q, dict) else q


@pytest.mark.parametrize(("expr", "metrics", "labels"), [
    ('sum by (le) (rate(a_bucket{job=~"$job", le!="+Inf"}[$__rate_interval])) / b_total',
     {"a_bucket", "b_total"}, {"le", "job"}),
    ("histogram_quantile(0.99, sum without (user) (x)) > 1e15", {"x"}, {"user"}),
    ('max_over_time(sum(rate(c{client_ip="a{b}"}[5m]))[$__range:$__interval]) * 13 * 3600',
     {"c"}, {"client_ip"}),
    ("up == 0 and on (instance) group_left (host) d", {"up", "d"}, {"instance", "host"}),
    ('absent(up{job="schoolgate"})', {"up"}, {"job"}),
])
def test_the_promql_reader_finds_metrics_and_labels(expr, metrics, labels):
    assert metric_names(expr) == metrics
    assert label_names(expr) == labels


def personal(label: str) -> bool:
    return any(part in PERSONAL for part in label.lower().split("_"))


# ---------------------------------------------------------------------------------------------
# Dashboards


def test_one_dashboard_per_audience_and_nothing_else():
    assert sorted(p.name for p in DASHBOARDS.glob("*.json")) == sorted(UIDS)


@pytest.mark.parametrize("name", sorted(UIDS))
def test_dashboard_has_its_stable_uid_and_the_shared_tag(name):
    d = ALL[name]
    assert d["uid"] == UIDS[name]
    assert TAG in d["tags"], f"{name} lacks the shared tag {TAG!r}"
    assert d["title"].startswith("Schoolgate / ")
    assert d.get("id") is None, "a provisioned dashboard must not carry a database id"


def test_uids_and_titles_are_unique():
    assert len({d["uid"] for d in ALL.values()}) == len(ALL)
    assert len({d["title"] for d in ALL.values()}) == len(ALL)


@pytest.mark.parametrize("name", sorted(UIDS))
def test_dashboard_has_a_prometheus_datasource_variable(name):
    variables = {v["name"]: v for v in ALL[name]["templating"]["list"]}
    ds = variables.get("datasource")
    assert ds is not None, f"{name} has no `datasource` variable"
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")


@pytest.mark.parametrize("name", sorted(UIDS))
def test_every_panel_and_query_uses_the_datasource_variable(name):
    d = ALL[name]
    for panel in _panels(d):
        assert panel.get("datasource") == DATASOURCE, f"{name}: panel {panel['title']!r}"
        assert panel.get("targets"), f"{name}: panel {panel['title']!r} has no query"
        assert panel.get("description"), f"{name}: panel {panel['title']!r} says nothing"
    for where, target in _queries(d):
        assert target.get("datasource") == DATASOURCE, f"{name}: {where}"
        assert target.get("expr", "").strip(), f"{name}: {where} has no expression"
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            assert v["datasource"] == DATASOURCE, f"{name}: variable {v['name']}"


@pytest.mark.parametrize("name", sorted(UIDS))
def test_panels_have_unique_ids_and_titles_and_do_not_overlap(name):
    panels = ALL[name]["panels"]
    ids = [p["id"] for p in panels] + [q["id"] for p in panels for q in p.get("panels", [])]
    assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
    titles = [p["title"] for p in _panels(ALL[name])]
    assert len(titles) == len(set(titles)), f"{name}: two panels with one title"
    taken: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"{name}: {p['title']!r} is off the grid"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in taken, f"{name}: {p['title']!r} overlaps {taken[(x, y)]!r}"
                taken[(x, y)] = p["title"]


@pytest.mark.parametrize(("where", "target"), QUERIES, ids=[w for w, _ in QUERIES])
def test_no_query_or_legend_names_a_personal_label(where, target):
    used = label_names(target["expr"])
    for key in ("legendFormat", "titleFormat", "textFormat"):
        used |= template_labels(target.get(key, ""))
    used |= {k.strip() for k in target.get("tagKeys", "").split(",") if k.strip()}  # annotations
    assert not {n for n in used if personal(n)}, f"{where}: {target['expr']}"


@pytest.mark.parametrize(("where", "variable"), VARIABLE_QUERIES,
                         ids=[w for w, _ in VARIABLE_QUERIES])
def test_variables_offer_no_personal_label(where, variable):
    m = _LABEL_VALUES.match(variable_query(variable))
    assert m, f"{where}: expected label_values(...), got {variable_query(variable)!r}"
    assert not personal(m[2]), where
    assert not {n for n in label_names(m[1] or "") if personal(n)}, where


# ---------------------------------------------------------------------------------------------
# Alert rules


def test_every_alert_has_a_severity_summary_and_description():
    for rule in _rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_no_alert_names_a_personal_label():
    for rule in _rules():
        used = label_names(rule["expr"]) | set(rule.get("labels", {}))
        for text in rule.get("annotations", {}).values():
            used |= template_labels(text)
        assert not {n for n in used if personal(n)}, rule["alert"]


def test_every_alert_has_a_not_yet_and_a_now_promtool_case():
    assert RULE_TESTS, "no promtool tests in dashboards/rules/tests/"
    cases: dict[str, list[bool]] = {}
    for path in RULE_TESTS:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for test in doc["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], []).append(bool(case.get("exp_alerts")))
    for rule in _rules():
        seen = cases.get(rule["alert"], [])
        assert False in seen, f"{rule['alert']} has no 'not yet' case (exp_alerts: [])"
        assert True in seen, f"{rule['alert']} has no 'now' case (an expected alert)"


# ---------------------------------------------------------------------------------------------
# Metric names against what the gateway exports


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> set[str]:
    """Sample names in the gateway's /metrics output, from a gateway built on the sample school
    with an illegal list and alert routing (the list and alert metrics exist only then)."""
    tmp = tmp_path_factory.mktemp("metrics")
    (tmp / "lists").mkdir()
    for name in ("gambling", "social_networks", "education"):
        (tmp / "lists" / name).write_text("example.com\n", encoding="utf-8")
    (tmp / "iwf.txt").write_text("iwf.example\n", encoding="utf-8")
    (tmp / "routing.yaml").write_text(
        f"templates: {REPO / 'templates' / 'email'}\n"
        "smtp: {host: 127.0.0.1, port: 25, from: sg@school.example}\n"
        "rules:\n  - {min_severity: high, recipients: [dsl@school.example]}\n"
        "fallback:\n  pupils: {recipients: [dsl@school.example]}\n"
        "  staff: {recipients: [head@school.example]}\n", encoding="utf-8")
    config = tmp / "schoolgate.yaml"
    config.write_text(BASE_CONFIG + "illegal_lists:\n  iwf:\n    kind: iwf\n"
                      "    source: iwf.txt\n    form: plain\n"
                      "alerts:\n  routing: routing.yaml\n", encoding="utf-8")
    from schoolgate.config.loader import load_config

    registry = CollectorRegistry()
    Gateway(load_config(config), registry=registry)
    text = generate_latest(registry).decode("utf-8")
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def _used_metrics() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for where, target in QUERIES:
        for m in metric_names(target["expr"]):
            used.setdefault(m, set()).add(where)
    for where, v in VARIABLE_QUERIES:
        for m in metric_names(_LABEL_VALUES.match(variable_query(v))[1] or ""):
            used.setdefault(m, set()).add(where)
    for rule in _rules():
        for m in metric_names(rule["expr"]):
            used.setdefault(m, set()).add(f"rule {rule['alert']}")
    return used


def test_the_exported_metrics_are_read(exported):
    # Guards the fixture: a gateway that exported nothing would make the next test vacuous.
    assert {"schoolgate_requests_total", "schoolgate_list_age_seconds",
            "schoolgate_decision_seconds_bucket", "schoolgate_alerts_total"} <= exported


def test_every_metric_used_is_exported_or_coming_soon(exported):
    unknown = {m: sorted(w) for m, w in _used_metrics().items()
               if m not in exported and m not in COMING_SOON and m not in PROMETHEUS_MADE}
    assert not unknown, f"metrics no gateway exports (typo, or add to COMING_SOON): {unknown}"


def test_coming_soon_is_not_exported_yet_and_is_used(exported):
    # One test over the whole list (not one per entry), so an empty list is checked, not skipped.
    now_exported = sorted(m for m in COMING_SOON if m in exported)
    assert not now_exported, (
        f"{now_exported} exported now: remove them from COMING_SOON here and from "
        "PENDING_METRICS in tests/e2e/test_prometheus.py"
    )
    unused = sorted(m for m in COMING_SOON if m not in _used_metrics())
    assert not unused, f"{unused} in COMING_SOON but nothing uses them"
