#!/usr/bin/env bash
# ringtgt --check-config: parses and validates without opening a device or
# binding a port. conf/node1.toml (the homelab's node1) validates once its
# secret files exist -- the test writes temporary 0600 ones and points a copy
# at them -- and describes the deployment in DESIGN.md; a broken copy fails
# with file:line:col; a missing secret file fails naming it.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

NODE1="$RINGTGT_SRC/conf/node1.toml"
COPY="$TMP/node1.toml"
mkdir -p "$TMP/secrets"
n=0
for f in discovery node2 node3 node1-for-node2 node1-for-node3; do
  n=$((n + 1))
  (umask 077 && printf 'test-secret-%s-%02d\n' "$f" "$n" >"$TMP/secrets/$f")
done
sed "s|/etc/ringtgt/secrets/|$TMP/secrets/|g" "$NODE1" >"$COPY"
grep -q '"/etc/ringtgt/secrets' "$COPY" && fail "secret paths not rewritten"

log "node1.toml (with test secrets) validates; no device opened, no address bound"
# 10.0.0.11 is not an address of this machine and /dev/vg0 does not exist: a
# daemon that bound or opened anything would fail here.
[[ -e /dev/vg0/lun1 ]] && log "note: /dev/vg0/lun1 exists on this machine"
run_ok "$TMP/check.txt" "$RINGTGT_BIN" --check-config --config "$COPY"
expect_grep "^$COPY: OK \\(1 portals, 2 targets, metrics on 10.0.0.11:9105\\)\$" "$TMP/check.txt" \
  "the summary line"
ss -Htln | grep -q '10.0.0.11:3260' && fail "something listens on 10.0.0.11:3260"

log "node1.toml matches the deployment (DESIGN.md)"
python3 - "$NODE1" <<'PY' || fail "node1.toml does not match the deployment"
import sys, tomllib
c = tomllib.load(open(sys.argv[1], 'rb'))
def need(cond, what):
    if not cond:
        sys.exit('node1.toml: ' + what)
need([p['listen'] for p in c['portal']] == ['10.0.0.11:3260'], 'portal must be 10.0.0.11:3260')
need(c.get('metrics', {}).get('listen', '').startswith('10.0.0.11:'), 'metrics on node1\'s address')
need('chap_user' in c.get('discovery', {}), 'discovery needs CHAP')
by_dev = {}
for t in c['target']:
    for l in t.get('lun', []):
        by_dev[l['path']] = (t, l)
for dev, node in (('/dev/vg0/lun1', 'node2'), ('/dev/vg0/lun2', 'node3')):
    need(dev in by_dev, f'{dev} is not exported')
    t, l = by_dev[dev]
    iqn = f'iqn.2025-01.com.jacobgade:{node}'
    need(t.get('allowed_initiators') == [iqn], f'{dev} must be open to {iqn} only')
    need(t.get('chap_user') and t.get('chap_secret_file'), f'{dev} target needs CHAP')
    need(len(t.get('lun', [])) == 1, f'{dev} target must hold only that LUN')
    need(l.get('write_ack', 'writethrough') == 'writethrough', f'{dev} must be write-through')
need(len(by_dev) == 2, 'exactly the two LVM volumes are exported')
PY

log "a broken copy fails with file:line:col"
line=$(grep -n '^  block_size = 512' "$COPY" | head -n1 | cut -d: -f1)
sed "${line}s/512/1000/" "$COPY" >"$TMP/broken.toml"
run_fails "$TMP/broken.txt" "$RINGTGT_BIN" --check-config --config "$TMP/broken.toml"
expect_grep "^ringtgt: config error: $TMP/broken.toml:$line:16: block_size must be 512 or 4096" \
  "$TMP/broken.txt" "the error names file, line and column"
rc=0
"$RINGTGT_BIN" --check-config --config "$TMP/broken.toml" >/dev/null 2>&1 || rc=$?
expect_eq "$rc" 1 "exit status of an invalid config"

log "a missing secret file fails naming it"
rm "$TMP/secrets/node3"
run_fails "$TMP/nosecret.txt" "$RINGTGT_BIN" --check-config --config "$COPY"
expect_grep "secret file \"$TMP/secrets/node3\"" "$TMP/nosecret.txt" "the missing secret named"
