#!/usr/bin/env python3
"""Asks a Prometheus's HTTP API what the integration tests wait for; every
wait polls every 0.2 s and gives up after TIMEOUT seconds, printing what it
saw last.

  prom_api.py BASE ready TIMEOUT
      /-/ready answers 200
  prom_api.py BASE query-eq TIMEOUT 'PROMQL' VALUE
      the instant query returns exactly one sample, equal to VALUE
  prom_api.py BASE rules-healthy TIMEOUT N_ALERTS
      N_ALERTS alerting rules are loaded, each evaluated at least once, none
      with an evaluation error
  prom_api.py BASE alert TIMEOUT NAME STATES [label=value ...]
      an alert NAME with those labels reaches one of STATES ("firing",
      "pending,firing"); prints the states it went through
  prom_api.py BASE alert-seq TIMEOUT NAME [label=value ...]
      the alert is firing and was pending before (seen by polling, or in
      Prometheus's own ALERTS{alertstate="pending"} series)
  prom_api.py BASE no-alert NAME [label=value ...]
      no alert NAME with those labels is pending or firing now
  prom_api.py BASE no-alerts [TIMEOUT]
      no alert at all is pending or firing (within TIMEOUT seconds; default
      now)
  prom_api.py BASE dashboard DASHBOARD.json
      every query of the Grafana dashboard (variables replaced: $__rate_interval
      by 1m, $target and $lun by .*) is valid PromQL and returns data
"""
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

POLL = 0.2


def get(base, path):
    with urllib.request.urlopen(base + path, timeout=5) as r:
        return json.load(r) if path.startswith('/api/') else r.status


def poll(timeout, probe, what):
    deadline = time.monotonic() + float(timeout)
    last = None
    while True:
        try:
            ok, last = probe()
            if ok:
                return last
        except OSError as e:  # not listening yet, or restarting
            last = repr(e)
        if time.monotonic() >= deadline:
            sys.exit(f'timed out after {timeout} s waiting for {what}; last seen:\n{last}')
        time.sleep(POLL)


def parse_labels(args):
    return dict(a.split('=', 1) for a in args)


def matching(base, name, labels):
    alerts = get(base, '/api/v1/alerts')['data']['alerts']
    return [a for a in alerts if a['labels'].get('alertname') == name and
            all(a['labels'].get(k) == v for k, v in labels.items())], alerts


def was_pending(base, name, labels):
    """Whether Prometheus recorded the alert as pending in the last 10 minutes
    (its ALERTS series): a pending state shorter than our polling is still seen."""
    sel = ','.join([f'alertname="{name}"', 'alertstate="pending"'] +
                   [f'{k}="{v}"' for k, v in labels.items()])
    query = f'count_over_time(ALERTS{{{sel}}}[10m])'
    res = get(base, '/api/v1/query?query=' + urllib.parse.quote(query))['data']['result']
    return any(float(r['value'][1]) > 0 for r in res)


def main():
    base, cmd, rest = sys.argv[1].rstrip('/'), sys.argv[2], sys.argv[3:]
    if cmd == 'ready':
        poll(rest[0], lambda: (get(base, '/-/ready') == 200, 'not ready'), 'Prometheus ready')
    elif cmd == 'query-eq':
        timeout, query, want = rest
        def probe():
            res = get(base, '/api/v1/query?query=' + urllib.parse.quote(query))['data']['result']
            return len(res) == 1 and float(res[0]['value'][1]) == float(want), res
        poll(timeout, probe, f'{query} == {want}')
    elif cmd == 'rules-healthy':
        timeout, n = rest
        def probe():
            rules = [r for g in get(base, '/api/v1/rules')['data']['groups'] for r in g['rules']
                     if r['type'] == 'alerting']
            bad = [r for r in rules if r.get('health') == 'err']
            if bad:
                sys.exit('rules with evaluation errors:\n' + json.dumps(bad, indent=1))
            done = len(rules) == int(n) and all(r.get('health') == 'ok' for r in rules)
            return done, f'{len(rules)} alerting rules: ' + ', '.join(
                f'{r["name"]}={r.get("health")}' for r in rules)
        print(poll(timeout, probe, f'{n} healthy alerting rules'))
    elif cmd in ('alert', 'alert-seq'):
        if cmd == 'alert':
            timeout, name, states, labels = rest[0], rest[1], rest[2].split(','), parse_labels(rest[3:])
        else:
            timeout, name, states, labels = rest[0], rest[1], ['firing'], parse_labels(rest[2:])
        seen = []
        def probe():
            found, alerts = matching(base, name, labels)
            for a in found:
                if not seen or seen[-1] != a['state']:
                    seen.append(a['state'])
            return any(a['state'] in states for a in found), json.dumps(alerts, indent=1)
        poll(timeout, probe, f'{name}{labels} {"|".join(states)}')
        if cmd == 'alert-seq' and 'pending' not in seen:
            if not was_pending(base, name, labels):
                sys.exit(f'{name} went firing without being pending first (seen: {seen})')
            seen.insert(0, 'pending (in ALERTS)')
        print(f'{name} {labels}: ' + ' -> '.join(seen))
    elif cmd == 'no-alert':
        found, _ = matching(base, rest[0], parse_labels(rest[1:]))
        if found:
            sys.exit(f'{rest[0]} is active:\n' + json.dumps(found, indent=1))
    elif cmd == 'no-alerts':
        def probe():
            alerts = get(base, '/api/v1/alerts')['data']['alerts']
            return not alerts, 'alerts active:\n' + json.dumps(alerts, indent=1)
        if rest:
            poll(rest[0], probe, 'no alert pending or firing')
        else:
            quiet, seen = probe()
            if not quiet:
                sys.exit(seen)
    elif cmd == 'dashboard':
        check_dashboard(base, rest[0])
    else:
        sys.exit(__doc__)


def dashboard_promql(node):
    """The PromQL of a Grafana dashboard: panel targets' expr, and template
    variables' label_values(METRIC, LABEL) as count by (LABEL) (METRIC)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == 'expr' and isinstance(v, str):
                yield v
            elif k == 'query' and isinstance(v, str) and v.startswith('label_values('):
                m = re.fullmatch(r'label_values\((.+),\s*(\w+)\)', v)
                if not m:
                    sys.exit(f'unexpected template query {v!r}')
                yield f'count by ({m.group(2)}) ({m.group(1)})'
            else:
                yield from dashboard_promql(v)
    elif isinstance(node, list):
        for v in node:
            yield from dashboard_promql(v)


def check_dashboard(base, path):
    with open(path) as f:
        queries = sorted(set(dashboard_promql(json.load(f))))
    if not queries:
        sys.exit(f'{path}: no queries')
    bad = []
    for q in queries:
        promql = (q.replace('$__rate_interval', '1m').replace('$target', '.*')
                  .replace('$lun', '.*'))
        try:
            res = get(base, '/api/v1/query?query=' + urllib.parse.quote(promql))
        except urllib.error.HTTPError as e:  # 400: not valid PromQL
            bad.append(f'{promql}: {e.read().decode(errors="replace")}')
            continue
        if res.get('status') != 'success' or not res['data']['result']:
            bad.append(f'{promql}: no data ({json.dumps(res)[:200]})')
    if bad:
        sys.exit('dashboard queries failing:\n' + '\n'.join(bad))
    print(f'{len(queries)} dashboard queries answer')


if __name__ == '__main__':
    main()
