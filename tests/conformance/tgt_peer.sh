# Sourced by run.sh --peer tgt: serves the conformance LUs from Debian's tgt
# (tgtd) instead of ringtgt: targets $iqn-full, $iqn-thin, $iqn-thin4k
# (tgt's thin_provisioning=1; thin4k also lbppbe=3, 4 KiB physical blocks) and
# $iqn-readonly (readonly=1), each with the same kind of backing file (256 MiB
# sparse, 512-byte blocks) and the write cache off (WCE=0), so that both
# targets face the same suite on the same machine. Defines start_daemon and
# stop_peer.

tgt_ctl=$((10000 + $$ % 20000))  # tgtd's management socket /var/run/tgtd/socket.N
# Caching mode page 08h with WCE=0, the form tgt-admin writes for "write-cache off".
tgt_wce_off=mode_page=8:0:18:0x10:0:0xff:0xff:0:0:0xff:0xff:0xff:0xff:0x80:0x14:0:0:0:0:0:0

if ! command -v tgtd >/dev/null || ! command -v tgtadm >/dev/null; then
  echo "run.sh: --peer tgt needs Debian's tgt package (tgtd, tgtadm)" >&2
  exit 2
fi
if [[ $(id -u) != 0 ]]; then
  echo "run.sh: --peer tgt must run as root (tgtd)" >&2
  exit 2
fi

tgt_adm() { tgtadm -C "$tgt_ctl" --lld iscsi "$@"; }

start_daemon() {
  tgtd -f -C "$tgt_ctl" --iscsi "portal=127.0.0.1:$port" >>"$results_dir/daemon.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 100); do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then break; fi
    kill -0 "$daemon_pid" 2>/dev/null || { echo "run.sh: tgtd exited; log:" >&2; tail -20 "$results_dir/daemon.log" >&2; return 1; }
    sleep 0.1
  done
  local tid=0 kind
  for kind in full thin thin4k readonly; do
    tid=$((tid + 1))
    rm -f "$work/lun-$kind.img"
    truncate -s 256M "$work/lun-$kind.img"
    tgt_adm --op new --mode target --tid "$tid" -T "$iqn-$kind" &&
      tgt_adm --op new --mode logicalunit --tid "$tid" --lun "$lun" --backing-store "$work/lun-$kind.img" --bstype rdwr &&
      tgt_adm --op update --mode logicalunit --tid "$tid" --lun "$lun" --params "$tgt_wce_off" &&
      tgt_adm --op bind --mode target --tid "$tid" -I ALL || return 1
    if [[ $kind == thin* ]]; then
      tgt_adm --op update --mode logicalunit --tid "$tid" --lun "$lun" --params thin_provisioning=1 || return 1
    fi
    if [[ $kind == thin4k ]]; then
      tgt_adm --op update --mode logicalunit --tid "$tid" --lun "$lun" --params lbppbe=3 || return 1
    fi
    if [[ $kind == readonly ]]; then
      tgt_adm --op update --mode logicalunit --tid "$tid" --lun "$lun" --params readonly=1 || return 1
    fi
  done
}

stop_peer() {
  if [[ -n $daemon_pid ]] && kill -0 "$daemon_pid" 2>/dev/null; then
    tgt_adm --op delete --mode system >/dev/null 2>&1 || kill "$daemon_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
  fi
  rm -f "/var/run/tgtd/socket.$tgt_ctl" "/var/run/tgtd/socket.$tgt_ctl.lock"
}
