#!/usr/bin/env python3
"""Checks of conf/prometheus/ (registered in ctest as prometheus.*):

  check.py rules    promtool check rules on the plain rules file and on the
                    PrometheusRule's spec; the manifest is what the generator
                    makes of the plain file; every alert has a severity, a
                    summary, a description and an explicit `for:`
  check.py unit     promtool test rules (tests/prometheus/ringtgt-rules.test.yml)
                    on the rules without annotations; every alert has a case
                    where it fires and a later one, in the same test, where it
                    has resolved
  check.py scrape   promtool check config on scrape-config.yml; the Service,
                    Endpoints and ServiceMonitor of node1-scrape.yaml fit
                    together and give job="ringtgt", as the rules expect
"""
import pathlib
import subprocess
import sys
import tempfile

import yaml

SRC = pathlib.Path(__file__).resolve().parents[2]
CONF = SRC / 'conf' / 'prometheus'
RULES = CONF / 'ringtgt-rules.yml'
GEN = CONF / 'gen_prometheusrule.py'
UNIT = SRC / 'tests' / 'prometheus' / 'ringtgt-rules.test.yml'
SEVERITIES = {'critical', 'warning'}

failures = []


def fail(msg):
    failures.append(msg)
    print('FAIL:', msg, file=sys.stderr)


def run(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    print('$', ' '.join(map(str, cmd)))
    print(r.stdout + r.stderr)
    if r.returncode != 0:
        fail(f'{" ".join(map(str, cmd))} exited {r.returncode}')
    return r


def alerts_of(path):
    return [r for g in yaml.safe_load(path.read_text())['groups'] for r in g['rules'] if 'alert' in r]


def check_rules():
    run('promtool', 'check', 'rules', RULES)
    run(sys.executable, GEN, '--check')
    with tempfile.TemporaryDirectory() as tmp:
        spec = pathlib.Path(tmp) / 'prometheusrule-spec.yml'
        run(sys.executable, GEN, '--spec', spec)
        run('promtool', 'check', 'rules', spec)
    manifest = yaml.safe_load((CONF / 'ringtgt-prometheusrule.yaml').read_text())
    if manifest.get('kind') != 'PrometheusRule' or \
            manifest.get('apiVersion') != 'monitoring.coreos.com/v1':
        fail('ringtgt-prometheusrule.yaml is not a monitoring.coreos.com/v1 PrometheusRule')
    if manifest.get('spec') != yaml.safe_load(RULES.read_text()):
        fail('the PrometheusRule spec differs from ringtgt-rules.yml')
    alerts = alerts_of(RULES)
    if not alerts:
        fail('no alerts in ' + str(RULES))
    for a in alerts:
        name = a['alert']
        if a.get('labels', {}).get('severity') not in SEVERITIES:
            fail(f'{name}: severity label not one of {sorted(SEVERITIES)}')
        ann = a.get('annotations', {})
        for key in ('summary', 'description'):
            if not str(ann.get(key, '')).strip():
                fail(f'{name}: no {key} annotation')
        if 'Check first' not in str(ann.get('description', '')):
            fail(f'{name}: the description does not say what to check first')
        if 'for' not in a:
            fail(f'{name}: no explicit for: (write "for: 0m" and why)')
        if not name.startswith('Ringtgt'):
            fail(f'{name}: alert names start with Ringtgt')
    print(f'{len(alerts)} alerts checked')


def check_unit():
    alerts = {a['alert'] for a in alerts_of(RULES)}
    cases = yaml.safe_load(UNIT.read_text())
    fired, resolved = set(), set()
    for test in cases['tests']:
        seen_firing = {}
        for c in sorted(test.get('alert_rule_test', []), key=lambda c: parse_duration(c['eval_time'])):
            name, t = c['alertname'], parse_duration(c['eval_time'])
            if name not in alerts:
                fail(f'{UNIT.name}: "{test.get("name")}" tests unknown alert {name}')
            if c.get('exp_alerts'):
                fired.add(name)
                seen_firing.setdefault(name, t)
            elif name in seen_firing and t > seen_firing[name]:
                resolved.add(name)
    for name in sorted(alerts - fired):
        fail(f'{UNIT.name}: no case where {name} fires')
    for name in sorted(alerts - resolved):
        fail(f'{UNIT.name}: no case where {name} resolves after firing')
    with tempfile.TemporaryDirectory() as tmp:
        doc = yaml.safe_load(RULES.read_text())
        for g in doc['groups']:
            for r in g['rules']:
                r.pop('annotations', None)
        (pathlib.Path(tmp) / 'rules.yml').write_text(yaml.safe_dump(doc, sort_keys=False))
        test = pathlib.Path(tmp) / UNIT.name
        test.write_text(UNIT.read_text())
        run('promtool', 'test', 'rules', test)


def parse_duration(s):
    units = {'ms': 0.001, 's': 1, 'm': 60, 'h': 3600, 'd': 86400}
    s = str(s)
    total, num = 0.0, ''
    i = 0
    while i < len(s):
        if s[i].isdigit() or s[i] == '.':
            num += s[i]
            i += 1
            continue
        unit = 'ms' if s[i:i + 2] == 'ms' else s[i]
        total += float(num) * units[unit]
        num = ''
        i += len(unit)
    return total


def check_scrape():
    snippet = CONF / 'scrape-config.yml'
    run('promtool', 'check', 'config', snippet)
    jobs = [j['job_name'] for j in yaml.safe_load(snippet.read_text())['scrape_configs']]
    if jobs != ['ringtgt']:
        fail(f'scrape-config.yml: jobs {jobs}, the rules select job="ringtgt"')
    docs = {d['kind']: d for d in yaml.safe_load_all((CONF / 'node1-scrape.yaml').read_text())}
    if set(docs) != {'Service', 'Endpoints', 'ServiceMonitor'}:
        fail(f'node1-scrape.yaml: kinds {sorted(docs)}, want Service, Endpoints, ServiceMonitor')
        return
    svc, ep, sm = docs['Service'], docs['Endpoints'], docs['ServiceMonitor']
    if svc['metadata']['name'] != 'ringtgt' and 'jobLabel' not in sm['spec']:
        fail('the Service is not named ringtgt: its job label will not match the rules')
    if svc['spec'].get('selector'):
        fail('the Service has a selector: Kubernetes would then manage (and empty) its Endpoints')
    if ep['metadata']['name'] != svc['metadata']['name']:
        fail('the Endpoints are not named like the Service')
    ns = {d['metadata'].get('namespace') for d in docs.values()}
    if len(ns) != 1:
        fail(f'node1-scrape.yaml: objects in different namespaces {ns}')
    want = sm['spec']['selector']['matchLabels']
    if any(svc['metadata'].get('labels', {}).get(k) != v for k, v in want.items()):
        fail(f'the ServiceMonitor selector {want} does not match the Service labels')
    if svc['metadata']['namespace'] not in sm['spec'].get('namespaceSelector', {}).get(
            'matchNames', [sm['metadata']['namespace']]):
        fail("the ServiceMonitor's namespaceSelector does not cover the Service")
    port_names = {p['name'] for p in svc['spec']['ports']}
    ep_ports = {p['name']: p['port'] for s in ep['subsets'] for p in s['ports']}
    for e in sm['spec']['endpoints']:
        if e['port'] not in port_names or e['port'] not in ep_ports:
            fail(f'ServiceMonitor port {e["port"]} is not a named port of the Service and Endpoints')
    static = yaml.safe_load(snippet.read_text())['scrape_configs'][0]['static_configs'][0]['targets']
    addrs = {f'{a["ip"]}:{p}' for s in ep['subsets'] for a in s['addresses'] for p in ep_ports.values()}
    if set(static) != addrs:
        fail(f'scrape-config.yml scrapes {static}, the Endpoints {sorted(addrs)}')


def main():
    cmds = {'rules': check_rules, 'unit': check_unit, 'scrape': check_scrape}
    if len(sys.argv) != 2 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]]()
    if failures:
        sys.exit(f'{len(failures)} failure(s)')
    print('OK')


if __name__ == '__main__':
    main()
