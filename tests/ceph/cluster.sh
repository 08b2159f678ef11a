#!/usr/bin/env bash
# A throwaway one-node Ceph cluster for the RBD tests, on 127.0.0.1 only: one
# monitor, one manager, one bluestore OSD on a sparse file, pool "rbd" of size 1,
# a fresh fsid and cephx keys, everything (data, sockets, logs) under DIR.
#
#   cluster.sh start DIR PORT_BASE   monitor on PORT_BASE (v2) and PORT_BASE+1 (v1);
#                                    the other daemons bind in PORT_BASE+2..+49.
#                                    Prints nothing; DIR/ceph.conf and
#                                    DIR/keyring (client.admin) are what clients use.
#   cluster.sh stop DIR              SIGTERM every daemon it started (pid files), then
#                                    SIGKILL what is left after 15 s; idempotent.
#   cluster.sh stop-osd DIR          stops the OSD only (the cluster then has no OSD up)
#   cluster.sh start-osd DIR         starts it again and waits until its PGs are active
set -euo pipefail

cmd=${1:?usage: cluster.sh start DIR PORT_BASE | stop DIR | stop-osd DIR | start-osd DIR}
dir=${2:?DIR missing}
conf=$dir/ceph.conf

say() { printf '[ceph %s] %s\n' "$(date +%T)" "$*" >&2; }

# wait_for SECONDS WHAT CMD...: polls CMD (every 0.5 s) until it succeeds.
wait_for() {
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs * 2; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  say "timed out after ${secs} s waiting for $what"
  tail -n 30 "$dir"/log/*.log >&2 2>/dev/null || true
  return 1
}

ceph_() { ceph -c "$conf" --connect-timeout 10 "$@"; }

stop_pid_file() {
  local f=$1 pid i
  [[ -f $f ]] || return 0
  pid=$(cat "$f")
  # Only the daemon this cluster started: its command line names this conf.
  if [[ -n $pid ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$conf"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

all_pgs_active() {
  local s
  s=$(ceph_ pg stat)
  [[ $s =~ ([0-9]+)\ pgs:\ ([0-9]+)\ active ]] && [[ ${BASH_REMATCH[1]} == "${BASH_REMATCH[2]}" ]]
}

start_osd() {
  ceph-osd -c "$conf" -i 0
  wait_for 60 "osd.0 up" bash -c "ceph -c '$conf' osd dump | grep -q '^osd.0 up'"
}

start() {
  local base=${3:?PORT_BASE missing}
  mkdir -p "$dir"/{mon,mgr,osd,run,log}
  local fsid
  fsid=$(cat /proc/sys/kernel/random/uuid)
  cat >"$conf" <<CONF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$base,v1:127.0.0.1:$((base + 1))]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind port min = $((base + 2))
ms bind port max = $((base + 49))
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $dir/keyring
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
crash dir = $dir/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
mon osd down out interval = 0
[mon.a]
mon data = $dir/mon
keyring = $dir/mon/keyring
[mgr.x]
mgr data = $dir/mgr
keyring = $dir/mgr/keyring
[osd.0]
osd data = $dir/osd
keyring = $dir/osd/keyring
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 4294967296
osd memory target = 1073741824
osd max object name len = 256
osd max object namespace len = 64
CONF
  ceph-authtool --create-keyring "$dir/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$dir/keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool "$dir/mon.keyring" --import-keyring "$dir/keyring" >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$base,v1:127.0.0.1:$((base + 1))]" \
    "$dir/monmap" >/dev/null
  ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/mon.keyring"
  ceph-mon -c "$conf" -i a
  wait_for 30 "the monitor" ceph_ mon stat

  ceph_ auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
    -o "$dir/mgr/keyring"
  ceph-mgr -c "$conf" -i x

  local osd_uuid
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  ceph_ osd new "$osd_uuid" >/dev/null
  ceph-osd -c "$conf" -i 0 --no-mon-config --mkfs --mkkey --osd-uuid "$osd_uuid" 2>"$dir/log/osd-mkfs.log" ||
    { cat "$dir/log/osd-mkfs.log" >&2; return 1; }
  ceph_ auth add osd.0 osd 'allow *' mon 'allow profile osd' mgr 'allow profile osd' \
    -i "$dir/osd/keyring" >/dev/null 2>&1
  start_osd

  ceph_ osd pool create rbd 16 16 >/dev/null 2>&1
  rbd -c "$conf" pool init rbd
  wait_for 60 "the pool's placement groups to be active" all_pgs_active
}

case $cmd in
  start) start "$@" ;;
  stop)
    for f in "$dir"/run/osd.0.pid "$dir"/run/mgr.x.pid "$dir"/run/mon.a.pid; do stop_pid_file "$f"; done
    ;;
  stop-osd) stop_pid_file "$dir/run/osd.0.pid" ;;
  start-osd)
    start_osd
    wait_for 60 "the pool's placement groups to be active" all_pgs_active
    ;;
  *) echo "cluster.sh: unknown command $cmd" >&2; exit 2 ;;
esac
