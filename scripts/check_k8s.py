#!/usr/bin/python3
"""Static checks of rendered Kubernetes objects (`kubectl kustomize
deploy/k8s | check_k8s.py`), no cluster needed:

- every object has apiVersion, kind and metadata.name;
- every workload's containers (init containers too) have an image,
  resource requests and limits, and run as non-root (runAsNonRoot in the
  pod's or the container's securityContext); its containers have liveness
  and readiness probes, drover's `drover health --self ROLE` for the role
  they run;
- a worker's terminationGracePeriodSeconds exceeds its --grace;
- every Service's selector, PodDisruptionBudget's selector and
  ServiceMonitor's selector matches a workload's pod labels (a Service's);
  every ScaledObject or HorizontalPodAutoscaler targets a workload that
  exists.

Usage: check_k8s.py [FILE] (else stdin); exit 0 when all hold, 1 with one
line per problem on stderr. Needs python3-yaml.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, List

import yaml

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
DROVER_ROLES = {"broker", "collector", "worker"}


def matches(selector: Dict[str, str], labels: Dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check(docs: List[Dict[str, Any]]) -> List[str]:
    problems: List[str] = []
    pods: Dict[str, Dict[str, str]] = {}  # "Kind/name": pod template labels
    services: Dict[str, Dict[str, str]] = {}
    for d in docs:
        kind = d.get("kind")
        name = (d.get("metadata") or {}).get("name")
        what = f"{kind}/{name}"
        for key in ("apiVersion", "kind"):
            if not d.get(key):
                problems.append(f"{what}: no {key}")
        if not name:
            problems.append(f"{what}: no metadata.name")
        if kind in WORKLOADS:
            tpl = (d.get("spec") or {}).get("template") or {}
            pods[what] = (tpl.get("metadata") or {}).get("labels") or {}
            sel = ((d.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            if not matches(sel, pods[what]):
                problems.append(f"{what}: its selector does not match its pods' labels")
            problems += check_pod(what, tpl.get("spec") or {})
        if kind == "Service":
            services[what] = (d.get("metadata") or {}).get("labels") or {}
    for d in docs:
        kind = d.get("kind")
        what = f"{kind}/{(d.get('metadata') or {}).get('name')}"
        spec = d.get("spec") or {}
        if kind == "Service":
            sel = spec.get("selector") or {}
            if not any(matches(sel, labels) for labels in pods.values()):
                problems.append(f"{what}: its selector {sel} matches no workload's pods")
        elif kind == "PodDisruptionBudget":
            sel = (spec.get("selector") or {}).get("matchLabels") or {}
            if not any(matches(sel, labels) for labels in pods.values()):
                problems.append(f"{what}: its selector {sel} matches no workload's pods")
        elif kind == "ServiceMonitor":
            sel = (spec.get("selector") or {}).get("matchLabels") or {}
            if not any(matches(sel, labels) for labels in services.values()):
                problems.append(f"{what}: its selector {sel} matches no Service")
        elif kind in ("ScaledObject", "HorizontalPodAutoscaler"):
            ref = spec.get("scaleTargetRef") or {}
            target = f"{ref.get('kind', 'Deployment')}/{ref.get('name')}"
            if target not in pods:
                problems.append(f"{what}: its target {target} does not exist")
    return problems


def check_pod(what: str, spec: Dict[str, Any]) -> List[str]:
    problems: List[str] = []
    pod_nonroot = (spec.get("securityContext") or {}).get("runAsNonRoot") is True
    containers = spec.get("containers") or []
    if not containers:
        problems.append(f"{what}: no containers")
    for init, c in [(True, c) for c in spec.get("initContainers") or []] + \
                   [(False, c) for c in containers]:
        cw = f"{what} container {c.get('name')}"
        if not c.get("image"):
            problems.append(f"{cw}: no image")
        res = c.get("resources") or {}
        if not res.get("requests") or not res.get("limits"):
            problems.append(f"{cw}: no resource requests and limits")
        sc = c.get("securityContext") or {}
        if sc.get("runAsNonRoot") is False or not (pod_nonroot or sc.get("runAsNonRoot")):
            problems.append(f"{cw}: not runAsNonRoot")
        if init:
            continue
        args = [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]
        role = next((a for a in args if a in DROVER_ROLES), None)
        for p in ("livenessProbe", "readinessProbe"):
            probe = c.get(p)
            if not probe:
                problems.append(f"{cw}: no {p}")
                continue
            cmd = " ".join(str(x) for x in ((probe.get("exec") or {}).get("command") or []))
            if role and f"drover health --self {role}" not in cmd:
                problems.append(f"{cw}: {p} is not drover health --self {role}")
        if role == "worker" and "--grace" in args:
            grace = float(args[args.index("--grace") + 1])
            period = spec.get("terminationGracePeriodSeconds", 30)
            if period <= grace:
                problems.append(f"{cw}: terminationGracePeriodSeconds {period} "
                                f"is not above --grace {grace:g}")
            if not ((c.get("lifecycle") or {}).get("preStop")):
                problems.append(f"{cw}: no preStop hook")
    return problems


def main(argv: List[str]) -> int:
    text = open(argv[1]).read() if len(argv) > 1 else sys.stdin.read()
    docs = [d for d in yaml.safe_load_all(text) if d]
    src = argv[1] if len(argv) > 1 else "stdin"
    problems = check(docs) if docs else ["no objects"]
    for p in problems:
        print(f"{src}: {p}", file=sys.stderr)
    if not problems:
        print(f"{src}: {len(docs)} objects ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
