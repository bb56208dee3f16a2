"""Security figures of the synthesised templates: what the tests in tests/stacks/test_security.py check, counted.

Usage: ``.venv/bin/python bench/bench_security.py [--cdk-out DIR ...]``

Without ``--cdk-out`` it synthesises dev and prod in-process (cdk-nag included, ~1 min each);
with it, it reads existing output (``npx cdk synth`` writes dev to ``cdk.out``). Prints, per
environment: templates, IAM statements checked, ``Resource: "*"`` statements and their
justifications, cdk-nag packs with their acknowledged findings, and encrypted stores by type.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stacks.security import (  # noqa: E402
    RESOURCE_STAR_OK,
    as_list,
    buckets_without_tls_policy,
    encryption_of,
    encryption_offenders,
    iam_statements,
    resource_star_actions,
    scan_files,
    unjustified_resource_star,
    wildcard_actions,
)


def synthesise(env_name: str, outdir: Path) -> Path:
    from stacks.app_builder import build_app, new_app

    app, _ = build_app(new_app(str(outdir)), env_name, placeholders_ok=True)
    app.synth()
    return outdir


def report(label: str, outdir: Path) -> None:
    paths = sorted(outdir.glob("*.template.json"))
    templates = [json.loads(p.read_text()) for p in paths]
    statements = [s for t in templates for _, s in iam_statements(t)]
    star = [s for s in statements if "*" in as_list(s.get("Resource", []))]
    print(f"\n== {label}")
    print(f"templates {len(paths)}, IAM allow statements checked {len(statements)}, with Resource '*' {len(star)}")
    problems = sum(len(f(t)) for t in templates for f in (wildcard_actions, unjustified_resource_star))
    problems += sum(len(f(t)) for t in templates for f in (encryption_offenders, buckets_without_tls_policy))
    print(f"wildcard actions, unjustified '*' resources, unencrypted stores, non-TLS buckets: {problems}")
    print(f"secrets found in templates: {len(scan_files(paths))}")
    actions = Counter(a for t in templates for _, a in resource_star_actions(t))
    print("Resource '*' actions (allow-list: stacks/security.py RESOURCE_STAR_OK):")
    for action, n in sorted(actions.items()):
        print(f"  {action:<48} x{n}  {RESOURCE_STAR_OK.get(action, 'NOT ALLOWED')}")
    nag = outdir / "validation-report.json"
    if nag.exists():
        print("cdk-nag packs: conclusion, acknowledgements (findings they cover), unacknowledged findings")
        for plugin in json.loads(nag.read_text())["pluginReports"]:
            acked = plugin.get("suppressedViolations", [])
            resources = sum(len(v["violatingConstructs"]) for v in acked)
            rules: Counter[str] = Counter()
            for v in acked:
                rules[v["ruleName"].split("[")[0].partition("-")[2]] += len(v["violatingConstructs"])
            top = ", ".join(f"{r} {n}" for r, n in rules.most_common(4))
            print(
                f"  {plugin['pluginName']:<16} {plugin['conclusion']:<8} {len(acked):>3} ({resources:>3}), "
                f"{len(plugin['violations'])}; most findings: {top}"
            )
    stores = Counter((type_, enc) for t in templates for type_, enc in encryption_of(t).values())
    print("encrypted stores by type (kms = customer key, service = service-owned key):")
    for type_ in sorted({t for t, _ in stores}):
        print(f"  {type_:<40} kms {stores[(type_, 'kms')]:>2}  service {stores[(type_, 'service')]:>2}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cdk-out", type=Path, action="append", help="read this synth output instead")
    args = parser.parse_args()
    if args.cdk_out:
        for outdir in args.cdk_out:
            report(str(outdir), outdir)
        return
    with tempfile.TemporaryDirectory(prefix="bench-security-") as tmp:
        for env_name in ("dev", "prod"):
            report(env_name, synthesise(env_name, Path(tmp) / env_name))


if __name__ == "__main__":
    main()
