#!/usr/bin/env bash
# The alert rules of conf/prometheus/ in a real Prometheus (Debian's package,
# run here on a loopback port with temporary storage; a system Prometheus on
# :9090, if any, is neither used nor disturbed) scraping a real ringtgt once a
# second. The rules are the shipped file with every `for:` cut to at most 3 s
# (a text rewrite, nothing else changed); the scrape config is the shipped
# snippet pointed at this daemon. Provoked, and seen through /api/v1/alerts:
# wrong CHAP secrets (RingtgtLoginAuthFailures), a reservation conflict
# (RingtgtLunReservationConflicts), a write to a read-only LUN
# (RingtgtLunWriteProtected), a target's only session ending
# (RingtgtTargetSessionsGone), the daemon stopped (RingtgtDown) and started
# again (RingtgtDown resolves, RingtgtRestarted fires). Every ringtgt_ metric
# the rules and the Grafana dashboard name must be in a scrape, and every
# dashboard query must answer with data in this Prometheus.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

for tool in prometheus promtool curl iscsi-inq qemu-io; do
  command -v $tool >/dev/null || fail "$tool is missing (scripts/deps.sh installs it)"
done
PR_TOOL=${PR_TOOL:-$(dirname "$RINGTGT_BIN")/tests/pr_tool}
[[ -x $PR_TOOL ]] || fail "pr_tool not found (set PR_TOOL): $PR_TOOL"
RULES_SRC="$RINGTGT_SRC/conf/prometheus/ringtgt-rules.yml"
SCRAPE_SRC="$RINGTGT_SRC/conf/prometheus/scrape-config.yml"
CHECK="python3 $RINGTGT_SRC/tests/integration/metrics_check.py"
API="python3 $RINGTGT_SRC/tests/integration/prom_api.py"

PORT=$(pick_port)
MPORT=$(pick_port)
PPORT=$(pick_port)
PROM="http://127.0.0.1:$PPORT"
OPEN=iqn.2025-01.com.example:open   # LUN 0 for reservations, LUN 1 read-only
HELD=iqn.2025-01.com.example:held   # one session that comes and goes
LOCKED=iqn.2025-01.com.example:locked
INITIATOR=iqn.2025-01.com.example:node2
SECRET=locked-secret-0123
mkdir -p "$TMP/secrets"
(umask 077 && printf '%s\n' "$SECRET" >"$TMP/secrets/locked")
truncate -s 8M "$TMP/ro.img"

config_prologue "$PORT" "$OPEN" >"$TMP/ringtgt.toml"
cat >>"$TMP/ringtgt.toml" <<CONF

  [[target.lun]]
  number = 0
  path = "$TMP/open.img"
  size = "8M"

  [[target.lun]]
  number = 1
  path = "$TMP/ro.img"
  read_only = true

  # Mirrored: the copy alerts' metrics exist only for a LUN with copies.
  [[target.lun]]
  number = 2
  path = "$TMP/mirror.img"
  size = "8M"
    [[target.lun.copy]]
    name = "b"
    path = "$TMP/mirror-b.img"

[[target]]
name = "$HELD"

  [[target.lun]]
  number = 0
  path = "$TMP/held.img"
  size = "8M"

[[target]]
name = "$LOCKED"
chap_user = "node2"
chap_secret_file = "$TMP/secrets/locked"

  [[target.lun]]
  number = 0
  path = "$TMP/locked.img"
  size = "8M"

[metrics]
listen = "127.0.0.1:$MPORT"
CONF
start_daemon "$TMP/ringtgt.toml" "$PORT"

log "test copies of the rules (for: at most 3s) and of the scrape snippet (1s, this daemon)"
python3 - "$RULES_SRC" "$TMP/rules.yml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
secs = {'s': 1, 'm': 60, 'h': 3600}
def shorten(m):
    return f'{m.group(1)}{min(int(m.group(2)) * secs[m.group(3)], 3)}s'
out, n = re.subn(r'^(\s+for: )(\d+)([smh])$', shorten, text, flags=re.M)
assert n > 0, 'no for: in the rules'
open(sys.argv[2], 'w').write(out)
PY
python3 - "$SCRAPE_SRC" "$TMP/prometheus.yml" "127.0.0.1:$MPORT" "$TMP/rules.yml" <<'PY'
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
job = cfg['scrape_configs'][0]
job.update(scrape_interval='1s', scrape_timeout='1s')
job['static_configs'][0]['targets'] = [sys.argv[3]]
cfg['global'] = {'evaluation_interval': '1s'}
cfg['rule_files'] = [sys.argv[4]]
yaml.safe_dump(cfg, open(sys.argv[2], 'w'))
PY
run_ok "$TMP/check-config.txt" promtool check config "$TMP/prometheus.yml"
NALERTS=$(grep -c '^ *- alert:' "$TMP/rules.yml")

log "prometheus on 127.0.0.1:$PPORT"
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/tsdb" \
  --web.listen-address="127.0.0.1:$PPORT" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!
bg_track $PROM_PID
ALL_LOGS+=("$TMP/prometheus.log")
$API "$PROM" ready 60 || fail "Prometheus not ready on port $PPORT"
$API "$PROM" query-eq 30 'up{job="ringtgt"}' 1 || fail "Prometheus does not scrape ringtgt"
$API "$PROM" rules-healthy 30 "$NALERTS" || fail "the rules did not load and evaluate cleanly"
# RingtgtNotScraped (absent(up), with the test's short for:) may fire in the
# seconds before Prometheus's first scrape on a loaded machine; it resolves at
# the next evaluation. An alert that stays active is a false alarm.
$API "$PROM" no-alerts 15 || fail "alerts active before anything was provoked"

log "every ringtgt_ metric the rules use is in a scrape"
curl -fsS --max-time 5 "http://127.0.0.1:$MPORT/metrics" -o "$TMP/scrape.txt" || fail "GET /metrics"
$CHECK "$TMP/scrape.txt" names >"$TMP/names.txt"
grep -oE 'ringtgt_[a-z_]+' "$RULES_SRC" | sort -u >"$TMP/used.txt"
[[ -s $TMP/used.txt ]] || fail "the rules use no ringtgt_ metric"
while read -r m; do
  grep -qx "$m" "$TMP/names.txt" || fail "the rules use $m, which is not in a scrape"
done <"$TMP/used.txt"

log "five logins with a wrong CHAP secret"
for i in 1 2 3 4 5; do
  run_fails "$TMP/inq-bad.$i.txt" iscsi-inq -i "$INITIATOR" \
    "iscsi://node2%wrong-secret-$i@127.0.0.1:$PORT/$(iqn_url "$LOCKED")/0"
done
$API "$PROM" alert 30 RingtgtLoginAuthFailures firing reason=auth severity=warning ||
  fail "RingtgtLoginAuthFailures did not fire"

log "a reservation conflict: node-a holds Write Exclusive, node-b writes"
URL0="iscsi://127.0.0.1:$PORT/$(iqn_url "$OPEN")/0"
run_ok "$TMP/pr.txt" "$PR_TOOL" -i iqn.2025-01.com.example:node-a "$URL0" register 0xa
run_ok "$TMP/pr.txt" "$PR_TOOL" -i iqn.2025-01.com.example:node-a "$URL0" reserve 0xa 1
run_ok "$TMP/pr.txt" "$PR_TOOL" -i iqn.2025-01.com.example:node-b "$URL0" write
expect_grep '^WRITE RESERVATION_CONFLICT$' "$TMP/pr.txt" "node-b's write"
$API "$PROM" alert 30 RingtgtLunReservationConflicts firing target="$OPEN" lun=0 ||
  fail "RingtgtLunReservationConflicts did not fire"

log "a write to the read-only LUN"
run_ok "$TMP/ro.txt" "$PR_TOOL" -i "$INITIATOR" "iscsi://127.0.0.1:$PORT/$(iqn_url "$OPEN")/1" write
expect_grep '^WRITE STATUS 0x02$' "$TMP/ro.txt" "CHECK CONDITION for a write to a read-only LUN"
$API "$PROM" alert 30 RingtgtLunWriteProtected firing target="$OPEN" lun=1 reason=data_protect ||
  fail "RingtgtLunWriteProtected did not fire"
$API "$PROM" no-alert RingtgtLunMediumErrors || fail "a write-protect error raised a medium error alert"

log "the only session of $HELD ends"
qemu-io -f raw -c "sleep 60000" "iscsi://127.0.0.1:$PORT/$(iqn_url "$HELD")/0" >"$TMP/qemu.txt" 2>&1 &
QEMU_PID=$!
bg_track $QEMU_PID
$API "$PROM" query-eq 30 "ringtgt_target_sessions{target=\"$HELD\"}" 1 ||
  fail "Prometheus never saw the session on $HELD"
$API "$PROM" no-alert RingtgtTargetSessionsGone target="$HELD" || fail "alert while the session is up"
kill -TERM "$QEMU_PID"
wait "$QEMU_PID" 2>/dev/null || true
$API "$PROM" alert-seq 30 RingtgtTargetSessionsGone target="$HELD" severity=critical ||
  fail "RingtgtTargetSessionsGone did not go pending, then firing"

log "every query of the Grafana dashboard is valid PromQL and has data"
DASH="$RINGTGT_SRC/conf/grafana/ringtgt.json"
$CHECK "$TMP/scrape.txt" dashboard "$DASH" >/dev/null || fail "the dashboard uses metrics not in a scrape"
$API "$PROM" dashboard "$DASH" || fail "dashboard queries fail in Prometheus"

log "the daemon stops"
stop_daemon_ok
$API "$PROM" alert-seq 30 RingtgtDown job=ringtgt severity=critical ||
  fail "RingtgtDown did not go pending, then firing"

log "the daemon starts again: RingtgtDown resolves, RingtgtRestarted fires"
start_daemon "$TMP/ringtgt.toml" "$PORT"
$API "$PROM" alert 30 RingtgtRestarted firing worker=0 || fail "RingtgtRestarted did not fire"
$API "$PROM" query-eq 30 'up{job="ringtgt"}' 1 || fail "Prometheus does not scrape ringtgt again"
$API "$PROM" query-eq 30 'count(ALERTS{alertname="RingtgtDown"}) or vector(0)' 0 ||
  fail "RingtgtDown did not resolve"
stop_daemon_ok

log "stopping prometheus"
kill -TERM "$PROM_PID"
for ((i = 0; i < 100; i++)); do kill -0 "$PROM_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$PROM_PID" 2>/dev/null && fail "prometheus did not exit within 10 s of SIGTERM"
wait "$PROM_PID" 2>/dev/null || true
expect_no_grep 'level=error' "$TMP/prometheus.log" "errors in Prometheus's log"
