#!/usr/bin/env bash
# systemd/ringtgt.service: `systemd-analyze verify` has nothing to say about it
# (any warning fails), with its ExecStart pointed at the built binary in a temp
# copy; the check itself is shown to catch a bad directive; and the hardening
# the service relies on is present.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (apt install systemd)"
UNIT="$RINGTGT_SRC/systemd/ringtgt.service"
[[ -f $UNIT ]] || fail "no $UNIT"

verify() { # UNIT_FILE OUT: systemd-analyze verify, all output in OUT; returns its status
  local rc=0
  # A unit name that cannot clash with an installed one.
  systemd-analyze verify "$1" >"$2" 2>&1 || rc=$?
  return $rc
}

mkdir -p "$TMP/units"
COPY="$TMP/units/ringtgt.service"
sed "s|/usr/sbin/ringtgt|$RINGTGT_BIN|g" "$UNIT" >"$COPY"
grep -q "ExecStart=$RINGTGT_BIN --config" "$COPY" || fail "ExecStart not rewritten in the copy"

log "systemd-analyze verify on the unit"
rc=0
verify "$COPY" "$TMP/verify.txt" || rc=$?
if ((rc != 0)) || [[ -s $TMP/verify.txt ]]; then
  cat "$TMP/verify.txt" >&2
  fail "systemd-analyze verify: status $rc, output above (any warning fails)"
fi

log "the check catches a broken unit"
sed 's/^Type=notify$/Type=notify\nRestartt=always/' "$COPY" >"$TMP/units/ringtgt-bad.service"
rc=0
verify "$TMP/units/ringtgt-bad.service" "$TMP/verify-bad.txt" || rc=$?
grep -q "Restartt" "$TMP/verify-bad.txt" || fail "verify did not report an unknown directive"

log "service settings"
for want in 'Type=notify' 'Restart=on-failure' 'WatchdogSec=' 'ProtectSystem=strict' \
  'StateDirectory=ringtgt' 'RuntimeDirectory=ringtgt' 'NoNewPrivileges=yes' 'PrivateTmp=yes' \
  'CapabilityBoundingSet=CAP_NET_BIND_SERVICE' 'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' \
  'ProtectKernelTunables=yes' 'ProtectKernelModules=yes' 'ProtectControlGroups=yes' \
  'LockPersonality=yes' 'MemoryDenyWriteExecute=yes' 'SystemCallArchitectures=native' \
  'DevicePolicy=closed' 'DeviceAllow=block-\* rw' 'LimitMEMLOCK=infinity'; do
  grep -Eq "^$want" "$UNIT" || fail "$UNIT lacks $want"
done
grep -Eq '^PrivateDevices=(yes|true)' "$UNIT" && fail "PrivateDevices would hide the block devices"
log "offline security exposure: $(systemd-analyze security --offline=yes "$COPY" 2>/dev/null |
  grep -o 'Overall exposure level.*' || echo '?')"
