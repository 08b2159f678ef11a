#!/usr/bin/env python3
"""Reads a Prometheus text scrape and answers the integration tests' questions.

  metrics_check.py FILE value 'NAME{label="v",...}'   prints the sample's value (exit 1 if absent)
  metrics_check.py FILE histograms NAME               checks every histogram of NAME is well
                                                      formed (buckets cumulative and ascending,
                                                      +Inf bucket == _count); prints how many
  metrics_check.py FILE names                         prints every metric family name
"""
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
