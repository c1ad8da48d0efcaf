"""Every metric that deploy/grafana/drover.json and
deploy/prometheus/drover.rules.yml name is one the collector exports: the
names in their PromQL expressions (a histogram's _bucket, _sum and _count
read as the histogram) against the families of a real collector's
/metrics, after a few jobs ran so that the per-queue and histogram series
are there. Standard library only (the rules file is read line by line, not
with a YAML parser)."""

from __future__ import annotations

import json
import os
import re
import urllib.request
from typing import Dict, Iterator, List, Set

from conftest import ROOT, Cluster

DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "drover.json")
RULES = os.path.join(ROOT, "deploy", "prometheus", "drover.rules.yml")
NAME = re.compile(r"\bdrover_[a-z0-9_]+")
SUFFIXES = ("_bucket", "_sum", "_count")


def dashboard_exprs(doc) -> Iterator[str]:
    """Every PromQL text in a dashboard JSON model: the panels' targets
    (rows nest theirs) and the template variables' queries."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in ("expr", "definition") and isinstance(v, str):
                yield v
            elif k == "query" and isinstance(v, str):
                yield v
            else:
                yield from dashboard_exprs(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from dashboard_exprs(v)


def rules_exprs(text: str) -> Iterator[str]:
    """The expr of each rule: inline (`expr: x`) or a block (`expr: |`
    and the lines indented deeper than the key)."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(?:- )?expr:\s*(.*)$", lines[i])
        i += 1
        if not m:
            continue
        indent, rest = len(m.group(1)), m.group(2).strip()
        if rest and rest[0] not in "|>":
            yield rest
            continue
        block: List[str] = []
        while i < len(lines) and (not lines[i].strip()
                                  or len(lines[i]) - len(lines[i].lstrip()) > indent):
            block.append(lines[i])
            i += 1
        yield "\n".join(block)


def referenced() -> Dict[str, Set[str]]:
    """name -> the files that name it."""
    out: Dict[str, Set[str]] = {}
    with open(DASHBOARD) as f:
        for e in dashboard_exprs(json.load(f)):
            for n in NAME.findall(e):
                out.setdefault(n, set()).add("deploy/grafana/drover.json")
    with open(RULES) as f:
        for e in rules_exprs(f.read()):
            for n in NAME.findall(e):
                out.setdefault(n, set()).add("deploy/prometheus/drover.rules.yml")
    return out


def families(text: str) -> Dict[str, str]:
    """name -> type, from the # TYPE lines of a /metrics text."""
    out = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            out[name] = typ
    return out


def sample_names(text: str) -> Set[str]:
    return {re.split(r"[{ ]", line, 1)[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def family_of(name: str, fams: Dict[str, str]) -> str:
    for s in SUFFIXES:
        if name.endswith(s) and fams.get(name[: -len(s)]) == "histogram":
            return name[: -len(s)]
    return name


def test_extractors_find_names() -> None:
    refs = referenced()
    # the alerts' and panels' own, so the extraction is not silently empty
    for n in ("drover_queue_oldest_seconds", "drover_broker_up",
              "drover_fleet_key_disabled_status", "drover_collector_lag_seconds"):
        assert "deploy/prometheus/drover.rules.yml" in refs.get(n, ()), n
    for n in ("drover_job_duration_seconds_bucket", "drover_job_wait_seconds_bucket",
              "drover_job_failures_total", "drover_worker_busy"):
        assert "deploy/grafana/drover.json" in refs.get(n, ()), n
    # an annotation's text is no expression
    assert list(rules_exprs("- alert: X\n  expr: up == 0\n  annotations:\n"
                            "    summary: drover_not_a_metric\n")) == ["up == 0"]


def test_every_named_metric_is_exported(cluster: Cluster) -> None:
    # one that succeeds, one that fails for good: per-queue series, both
    # histograms, failures by category
    ok = cluster.run("submit", "echo", '{"m": 1}', "--queue", "default",
                     "--wait", "--json")
    assert ok.rc == 0, ok.err
    bad = cluster.run("submit", "fail", "--queue", "default",
                      "--max-attempts", "1", "--wait", "--json")
    assert bad.rc == 1, bad.err
    url = f"http://127.0.0.1:{cluster.http_port}/metrics"

    def scraped():
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
        return text if 'drover_job_failures_total{queue="default"' in text \
            and 'drover_job_wait_seconds_bucket{queue="default"' in text else None
    text = cluster.wait_for(scraped, "/metrics shows the jobs of queue default")
    fams = families(text)
    samples = sample_names(text)
    unknown = sorted(f"{n} (in {', '.join(sorted(files))})"
                     for n, files in referenced().items()
                     if family_of(n, fams) not in fams)
    assert not unknown, "named but not exported by the collector:\n  " + \
        "\n  ".join(unknown)
    # a histogram's series are there once a job ran
    for n in ("drover_job_duration_seconds_bucket", "drover_job_wait_seconds_count",
              "drover_queue_oldest_seconds", "drover_queue_workers",
              "drover_broker_active", "drover_broker_store_ok",
              "drover_collector_lag_seconds"):
        assert n in samples, n
