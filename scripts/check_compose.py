#!/usr/bin/python3
"""Static checks of deploy/compose.yaml (no container engine needed):

- every service has an image or a build, a healthcheck with a test, and a
  restart policy; drover's services probe with `drover health --self`
  and the role they run;
- no environment value looks like a secret: a variable named like a
  secret (*SECRET*, *TOKEN*, *KEY*, *PASSWORD*) holds a file path, no
  value is a long random-looking string, no URL carries a password;
- every secret and config a service names is declared at the top level
  with a file;
- the ports drover's services publish and bind are the ones the port table
  of docs/deploy.md gives their process.

Usage: check_compose.py [COMPOSE_YAML [DEPLOY_MD]]; exit 0 when all hold,
1 with one line per problem on stderr. Needs python3-yaml.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Dict, List, Set

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET_NAME = re.compile(r"SECRET|TOKEN|(^|_)KEYS?($|_)|PASSWORD|PASSWD|CREDENTIAL",
                         re.I)
RANDOMISH = re.compile(r"^[A-Za-z0-9+/=_\-]{24,}$")
URL_PASSWORD = re.compile(r"://[^/@\s:]+:[^/@\s]+@")
# The flags by which each process binds a listening socket.
BIND_FLAGS = {"broker": ("--clients", "--workers", "--events"),
              "collector": ("--bind", "--http")}


def port_table(deploy_md: str) -> Dict[str, Set[int]]:
    """{process: ports it listens on} from the first table of deploy.md
    (`drover broker`, `drover worker`, `drover collector`)."""
    ports: Dict[str, Set[int]] = {}
    with open(deploy_md) as f:
        for line in f:
            m = re.match(r"^\| `drover (broker|worker|collector)` \| ([^|]*) \|", line)
            if m:
                ports[m.group(1)] = {int(p) for p in re.findall(r"\b(7\d{3})\b",
                                                                 m.group(2))}
    return ports


def as_list(v: Any) -> List[Any]:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def env_items(svc: Dict[str, Any]) -> List[tuple]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        return [tuple(e.split("=", 1)) if "=" in e else (e, None) for e in env]
    return list(env.items())


def container_port(spec: Any) -> int:
    if isinstance(spec, dict):
        return int(spec["target"])
    s = str(spec).split("/")[0]
    return int(s.split(":")[-1])


def check(compose_path: str, deploy_md: str) -> List[str]:
    with open(compose_path) as f:
        doc = yaml.safe_load(f)
    problems: List[str] = []
    table = port_table(deploy_md)
    for proc in ("broker", "worker", "collector"):
        if proc not in table:
            problems.append(f"{deploy_md}: no port table row for `drover {proc}`")
    secrets = doc.get("secrets") or {}
    configs = doc.get("configs") or {}
    for name, s in secrets.items():
        if not (isinstance(s, dict) and (s.get("file") or s.get("external"))):
            problems.append(f"secret {name}: no file")
    services = doc.get("services") or {}
    if not services:
        problems.append("no services")
    for name, svc in services.items():
        where = f"service {name}"
        if not (svc.get("image") or svc.get("build")):
            problems.append(f"{where}: neither image nor build")
        if not svc.get("restart") and not (svc.get("deploy") or {}).get("restart_policy"):
            problems.append(f"{where}: no restart policy")
        hc = svc.get("healthcheck") or {}
        test = as_list(hc.get("test"))
        if not test or hc.get("disable"):
            problems.append(f"{where}: no healthcheck")
        for k, v in env_items(svc):
            v = "" if v is None else str(v)
            if SECRET_NAME.search(k) and v and not v.startswith("/"):
                problems.append(f"{where}: {k} holds a value inline; give a "
                                "file (a secret) instead")
            if RANDOMISH.match(v) and not v.startswith("/"):
                problems.append(f"{where}: {k}'s value looks like a secret")
            if URL_PASSWORD.search(v):
                problems.append(f"{where}: {k} holds a URL with a password")
        for s in as_list(svc.get("secrets")):
            sname = s["source"] if isinstance(s, dict) else s
            if sname not in secrets:
                problems.append(f"{where}: secret {sname} is not declared")
        for c in as_list(svc.get("configs")):
            cname = c["source"] if isinstance(c, dict) else c
            if cname not in configs:
                problems.append(f"{where}: config {cname} is not declared")
        cmd = [str(c) for c in as_list(svc.get("command"))]
        image = str(svc.get("image") or "")
        is_drover = image.startswith("drover") or (
            isinstance(svc.get("build"), dict)
            and "Dockerfile" in str(svc["build"].get("dockerfile", "")))
        if not is_drover:
            for arg in cmd:
                if URL_PASSWORD.search(arg):
                    problems.append(f"{where}: a URL with a password in command")
            continue
        role = cmd[0] if cmd else ""
        if role not in table:
            problems.append(f"{where}: command {cmd[:1]} is not broker, worker "
                            "or collector")
            continue
        joined = " ".join(str(t) for t in test)
        if f"health --self {role}" not in joined.replace('"', ""):
            problems.append(f"{where}: healthcheck is not `drover health --self {role}`")
        allowed = table[role]
        for p in as_list(svc.get("ports")):
            cp = container_port(p)
            if cp not in allowed:
                problems.append(f"{where}: publishes {cp}, which docs/deploy.md "
                                f"does not give `drover {role}` ({sorted(allowed)})")
        for arg in cmd:
            if URL_PASSWORD.search(arg):
                problems.append(f"{where}: a URL with a password in command")
        for flag, arg in zip(cmd, cmd[1:]):
            if flag not in BIND_FLAGS.get(role, ()):
                continue
            m = re.search(r":(\d+)$", arg)
            if m and int(m.group(1)) not in allowed:
                problems.append(f"{where}: {flag} {arg}: docs/deploy.md gives "
                                f"`drover {role}` {sorted(allowed)}")
    return problems


def main(argv: List[str]) -> int:
    compose = argv[1] if len(argv) > 1 else os.path.join(ROOT, "deploy", "compose.yaml")
    deploy_md = argv[2] if len(argv) > 2 else os.path.join(ROOT, "docs", "deploy.md")
    problems = check(compose, deploy_md)
    for p in problems:
        print(f"{compose}: {p}", file=sys.stderr)
    if not problems:
        print(f"{compose}: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
