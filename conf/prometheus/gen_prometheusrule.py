#!/usr/bin/env python3
"""Writes ringtgt-prometheusrule.yaml (a PrometheusRule for the Prometheus
operator) from ringtgt-rules.yml (the plain rules file), so that the two can
never say different things.

  gen_prometheusrule.py            rewrite the manifest beside this script
  gen_prometheusrule.py --check    exit 1, with a diff, if the manifest is stale
  gen_prometheusrule.py --spec OUT write the manifest's spec back out as a plain
                                   rules file (for `promtool check rules`)

The plain file's text (comments included) becomes the manifest's `spec:`,
indented; only the header comment above `groups:` is replaced.
"""
import difflib
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
RULES = HERE / 'ringtgt-rules.yml'
MANIFEST = HERE / 'ringtgt-prometheusrule.yaml'
INDENT = '  '

HEADER = """\
# GENERATED from ringtgt-rules.yml by gen_prometheusrule.py: edit that file and
# run the script (tests/prometheus checks that this file is up to date).
#
# ringtgt's alert rules for the Prometheus operator (kube-prometheus-stack).
# The release label must match the Prometheus's ruleSelector; with
# kube-prometheus-stack that is the Helm release name (see docs/monitoring.md).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: ringtgt
  namespace: monitoring
  labels:
    app.kubernetes.io/name: ringtgt
    release: kube-prometheus-stack
spec:
"""


def rules_body(text):
    """The plain file from its `groups:` line on (its header is about the plain file)."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith('groups:'):
            return lines[i:]
    sys.exit(f'{RULES}: no top-level "groups:"')


def manifest_text():
    body = rules_body(RULES.read_text())
    return HEADER + ''.join(INDENT + l if l.strip() else l for l in body)


def spec_of(manifest):
    """The manifest's spec, un-indented: a plain rules file again."""
    lines = manifest.splitlines(keepends=True)
    start = lines.index('spec:\n') + 1
    out = []
    for line in lines[start:]:
        if line.strip() and not line.startswith(INDENT):
            sys.exit(f'{MANIFEST}: unexpected top-level line after spec: {line!r}')
        out.append(line[len(INDENT):] if line.strip() else line)
    return ''.join(out)


def main():
    args = sys.argv[1:]
    want = manifest_text()
    if args == ['--check']:
        have = MANIFEST.read_text() if MANIFEST.exists() else ''
        if have != want:
            sys.stdout.writelines(difflib.unified_diff(
                have.splitlines(keepends=True), want.splitlines(keepends=True),
                str(MANIFEST), 'generated from ' + str(RULES)))
            sys.exit(f'{MANIFEST.name} is stale: run {pathlib.Path(__file__).name}')
        return
    if len(args) == 2 and args[0] == '--spec':
        pathlib.Path(args[1]).write_text(spec_of(MANIFEST.read_text()))
        return
    if args:
        sys.exit(__doc__)
    MANIFEST.write_text(want)


if __name__ == '__main__':
    main()
