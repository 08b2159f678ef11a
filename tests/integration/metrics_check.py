#!/usr/bin/env python3
"""Reads a Prometheus text scrape and answers the integration tests' questions.

  metrics_check.py FILE value 'NAME{label="v",...}'   prints the sample's value (exit 1 if absent)
  metrics_check.py FILE histograms NAME               checks every histogram of NAME is well
                                                      formed (buckets cumulative and ascending,
                                                      +Inf bucket == _count); prints how many
  metrics_check.py FILE names                         prints every metric family name
  metrics_check.py FILE dashboard DASHBOARD.json      every ringtgt_ metric a query of the Grafana
                                                      dashboard names is in FILE (exit 1 naming
                                                      those that are not); prints how many
"""
import json
import math
import re
import sys

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(path):
    samples = []
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith('#'):
                continue
            m = LINE.match(line)
            if not m:
                sys.exit(f'unparsable line: {line!r}')
            labels = tuple(LABEL.findall(m.group(3) or ''))
            samples.append((m.group(1), labels, float(m.group(4))))
    return samples


def key(name, labels):
    return name + '{' + ','.join(f'{k}="{v}"' for k, v in labels) + '}'


def dashboard_queries(node):
    """Every PromQL string of a Grafana dashboard: panel targets' expr and
    template variables' query (a string or {"query": ...})."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == 'expr' and isinstance(v, str):
                yield v
            elif k == 'query' and isinstance(v, str) and 'ringtgt_' in v:
                yield v
            else:
                yield from dashboard_queries(v)
    elif isinstance(node, list):
        for v in node:
            yield from dashboard_queries(v)


def main():
    path, cmd = sys.argv[1], sys.argv[2]
    samples = parse(path)
    if cmd == 'value':
        want = sys.argv[3]
        if '{' not in want:
            want += '{}'
        for name, labels, v in samples:
            if key(name, labels) == want:
                print(int(v) if v == int(v) else v)
                return
        sys.exit(f'no sample {want}')
    if cmd == 'names':
        for n in sorted({n for n, _, _ in samples}):
            print(n)
        return
    if cmd == 'dashboard':
        with open(sys.argv[3]) as f:
            queries = list(dashboard_queries(json.load(f)))
        used = {m for q in queries for m in re.findall(r'\bringtgt_[a-zA-Z0-9_:]*', q)}
        if not used:
            sys.exit(f'{sys.argv[3]}: no query names a ringtgt_ metric')
        exported = {n for n, _, _ in samples}
        missing = sorted(used - exported)
        if missing:
            sys.exit(f'{sys.argv[3]} uses metrics the scrape does not have: {", ".join(missing)}')
        print(len(used))
        return
    if cmd == 'histograms':
        base = sys.argv[3]
        series = {}
        for name, labels, v in samples:
            if name == base + '_bucket':
                le = dict(labels)['le']
                rest = tuple(l for l in labels if l[0] != 'le')
                series.setdefault(rest, {'b': [], 'count': None, 'sum': None})['b'].append(
                    (math.inf if le == '+Inf' else float(le), v))
            elif name in (base + '_count', base + '_sum'):
                series.setdefault(labels, {'b': [], 'count': None, 'sum': None})[
                    name[len(base) + 1:]] = v
        if not series:
            sys.exit(f'no histogram {base}')
        for labels, s in series.items():
            where = key(base, labels)
            b = s['b']
            if not b or s['count'] is None or s['sum'] is None:
                sys.exit(f'{where}: buckets, _sum or _count missing')
            bounds = [x for x, _ in b]
            if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
                sys.exit(f'{where}: bucket bounds not strictly ascending: {bounds}')
            if bounds[-1] != math.inf:
                sys.exit(f'{where}: no +Inf bucket')
            counts = [c for _, c in b]
            if any(a > c for a, c in zip(counts, counts[1:])):
                sys.exit(f'{where}: buckets not cumulative: {counts}')
            if counts[-1] != s['count']:
                sys.exit(f'{where}: +Inf bucket {counts[-1]} != _count {s["count"]}')
            if s['sum'] < 0 or (s['count'] == 0 and s['sum'] != 0):
                sys.exit(f'{where}: bad _sum {s["sum"]} for _count {s["count"]}')
        print(len(series))
        return
    sys.exit(f'unknown command {cmd}')


if __name__ == '__main__':
    main()
