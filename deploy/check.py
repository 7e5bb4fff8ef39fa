#!/usr/bin/env python3
"""Consistency checks of the monitoring files, run by .ci/run beside promtool.

- alerts.yml: every rule has an expr; every alert has a severity and the
  summary, description and runbook_url annotations, and its runbook_url points
  to a heading of docs/operations.md that exists;
- prometheus.yml: its rule files exist;
- the Grafana provisioning files parse, the dashboard JSON parses and every
  panel query names metrics that exist;
- every metric the rules and the dashboard use is registered in
  src/telemetry/metrics.rs (or is Prometheus's own: up, probe_success), and
  every registered metric is in the metric reference of docs/operations.md.

With `--promtool PATH`, the dashboard's queries are also parsed by promtool
(written as recording rules, with Grafana's variables replaced).

Needs python3 and PyYAML (Debian: python3-yaml). Exits non-zero naming each
problem.
"""

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("deploy/check.py needs PyYAML (apt-get install python3-yaml, or pip install pyyaml)")

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
RUNBOOK = ROOT / "docs" / "operations.md"
METRICS_RS = ROOT / "src" / "telemetry" / "metrics.rs"

# Series that Prometheus itself or the blackbox exporter provides.
EXTERNAL = {"up", "probe_success"}

problems = []


def problem(msg):
    problems.append(msg)


def anchors(markdown):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in markdown.splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if m:
            text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            out.add(text.replace(" ", "-"))
    return out


def registered_metrics():
    """Exposed names of the metrics registered in metrics.rs, by kind."""
    src = METRICS_RS.read_text()
    fields = dict(re.findall(r"^\s+(\w+): (Family<Labels, \w+>|\w+)(?:<[^>]*>)?,$", src, re.M))
    names = {}
    for name, field in re.findall(
        r'registry\.register\(\s*"(\w+)",\s*"(?:[^"\\]|\\.)*",\s*m\.(\w+)\.clone\(\)', src
    ):
        kind = fields.get(field, "")
        if "Counter" in kind:
            exposed = {f"terminus_{name}_total"}
        elif "Histogram" in kind:
            exposed = {f"terminus_{name}_{s}" for s in ("bucket", "sum", "count")}
        else:
            exposed = {f"terminus_{name}"}
        names[f"terminus_{name}"] = exposed
    return names


def metric_names(expr):
    """Metric names in a PromQL expression (good enough for our queries)."""
    found = set()
    for m in re.finditer(r"\b(terminus_\w+|up|probe_success)\b(?=\s*[{\[)\s]|$)", expr):
        found.add(m.group(1))
    return found


def grafana_to_promql(expr):
    """A dashboard query with Grafana's variables replaced by plain values."""
    return (
        expr.replace("$__rate_interval", "5m")
        .replace("$__range", "1h")
        .replace("$instance", ".*")
    )


def parse_with_promtool(promtool, queries):
    """Parses (where, expr) pairs with `promtool check rules`."""
    rules = [
        {"record": f"dashboard:query_{i}", "expr": grafana_to_promql(expr)}
        for i, (_, expr) in enumerate(queries)
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
        path = f.name
    try:
        run = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    finally:
        Path(path).unlink()
    if run.returncode != 0:
        out = (run.stdout + run.stderr).strip()
        for i, (where, _) in enumerate(queries):
            if f"dashboard:query_{i}" in out or f"rule {i + 1}" in out:
                problem(f"{where}: promtool cannot parse the query")
        problem(f"promtool check rules on the dashboard queries failed:\n{out}")


def main():
    promtool = None
    if sys.argv[1:2] == ["--promtool"] and len(sys.argv) > 2:
        promtool = sys.argv[2]
    elif len(sys.argv) > 1:
        sys.exit("usage: deploy/check.py [--promtool PATH]")
    queries = []
    registered = registered_metrics()
    if not registered:
        problem(f"no metric registrations found in {METRICS_RS.relative_to(ROOT)}")
    exposed = set().union(*registered.values()) if registered else set()

    def check_expr(where, expr):
        for name in metric_names(expr):
            if name not in exposed and name not in EXTERNAL:
                problem(f"{where}: metric {name} is not exported by Terminus")

    # alerts.yml
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    runbook_anchors = anchors(RUNBOOK.read_text())
    seen = set()
    for group in rules.get("groups", []):
        if not group.get("name") or not group.get("rules"):
            problem("alerts.yml: a group without name or rules")
        for rule in group.get("rules", []):
            name = rule.get("alert") or rule.get("record")
            if not name or not rule.get("expr"):
                problem(f"alerts.yml: rule {name!r} needs a name and an expr")
                continue
            check_expr(f"alerts.yml {name}", str(rule["expr"]))
            if "record" in rule:
                continue
            if name in seen:
                problem(f"alerts.yml: alert {name} defined twice")
            seen.add(name)
            if rule.get("labels", {}).get("severity") not in {"critical", "warning", "info"}:
                problem(f"alerts.yml {name}: severity must be critical, warning or info")
            ann = rule.get("annotations", {})
            for key in ("summary", "description", "runbook_url"):
                if not ann.get(key):
                    problem(f"alerts.yml {name}: annotation {key} missing")
            url = ann.get("runbook_url", "")
            if not url.startswith("docs/operations.md#"):
                problem(f"alerts.yml {name}: runbook_url should be docs/operations.md#<anchor>")
            elif url.split("#", 1)[1] not in runbook_anchors:
                problem(f"alerts.yml {name}: docs/operations.md has no heading for #{url.split('#', 1)[1]}")

    # prometheus.yml
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    for rf in config.get("rule_files", []):
        if not (PROM / rf).exists():
            problem(f"prometheus.yml: rule file {rf} does not exist")
    jobs = {sc.get("job_name") for sc in config.get("scrape_configs", [])}
    for job in ("terminus", "terminus-readyz"):
        if job not in jobs:
            problem(f"prometheus.yml: scrape job {job} missing (alerts.yml selects it)")

    # Grafana
    for path in sorted((GRAFANA / "provisioning").rglob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        if not isinstance(doc, dict) or doc.get("apiVersion") != 1:
            problem(f"{path.relative_to(ROOT)}: expected a provisioning file with apiVersion: 1")
    dashboards = sorted((GRAFANA / "dashboards").glob("*.json"))
    if not dashboards:
        problem("deploy/grafana/dashboards: no dashboard")
    for path in dashboards:
        where = path.relative_to(ROOT)
        try:
            dash = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            problem(f"{where}: {e}")
            continue
        if not dash.get("uid") or not dash.get("title"):
            problem(f"{where}: needs uid and title")
        ids = set()
        for panel in dash.get("panels", []):
            if panel.get("id") in ids:
                problem(f"{where}: panel id {panel.get('id')} used twice")
            ids.add(panel.get("id"))
            if panel.get("type") == "row":
                continue
            targets = panel.get("targets", [])
            if not targets:
                problem(f"{where}: panel {panel.get('title')!r} has no query")
            for t in targets:
                check_expr(f"{where} panel {panel.get('title')!r}", t.get("expr", ""))
                queries.append((f"{where} panel {panel.get('title')!r}", t.get("expr", "")))
    if promtool and queries:
        parse_with_promtool(promtool, queries)

    # metric reference
    # (counters under their exposed name with _total, histograms under their base name)
    runbook = RUNBOOK.read_text()
    for name, names in sorted(registered.items()):
        doc_name = next(iter(names)) if len(names) == 1 else name
        if f"| `{doc_name}` |" not in runbook:
            problem(f"docs/operations.md: metric {doc_name} is missing from the metric reference table")

    if problems:
        for p in problems:
            print(f"deploy/check.py: {p}", file=sys.stderr)
        return 1
    print(
        f"deploy/check.py: ok ({len(seen)} alerts, {len(registered)} metrics, "
        f"{len(dashboards)} dashboard(s), {len(queries)} dashboard queries"
        f"{' parsed by promtool' if promtool else ''})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
