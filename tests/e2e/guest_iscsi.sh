# Sourced inside an end-to-end guest (after guest_checks.sh): open-iscsi and
# fio as a Pi uses them, against the portal in PORTAL (ADDR:PORT).

# iscsid_conf KEY VALUE: sets KEY in /etc/iscsi/iscsid.conf (replacing the
# commented default), as docs/homelab.md tells a Pi owner to.
iscsid_conf() {
  local conf=/etc/iscsi/iscsid.conf
  sed -i "/^#* *${1//[/\\[} *=/d" "$conf"
  echo "$1 = $2" >>"$conf"
}
# wait_iscsid: until iscsiadm reaches iscsid (status 20: not yet).
wait_iscsid() {
  local i
  for ((i = 0; i < 100; i++)); do
    iscsiadm -m session >/dev/null 2>&1
    (($? != 20)) && return 0
    sleep 0.1
  done
  return 1
}
node_set() { # node_set TARGET IFACE KEY VALUE
  iscsiadm -m node -T "$1" -p "$PORTAL" -I "$2" -o update -n "$3" -v "$4" ||
    fatal node-record "cannot set $3 on $1 ($2)"
}
chap() { # chap TARGET IFACE USER SECRET [MUTUAL_USER MUTUAL_SECRET]
  node_set "$1" "$2" node.session.auth.authmethod CHAP
  node_set "$1" "$2" node.session.auth.username "$3"
  node_set "$1" "$2" node.session.auth.password "$4"
  if [[ -n ${5:-} ]]; then
    node_set "$1" "$2" node.session.auth.username_in "$5"
    node_set "$1" "$2" node.session.auth.password_in "$6"
  fi
}
login() { iscsiadm -m node -T "$1" -p "$PORTAL" -I "$2" -l; }
logout() { iscsiadm -m node -T "$1" -p "$PORTAL" -I "$2" -u; }
# session_disk TARGET INITIATOR LUN: prints sdX once the kernel attached it.
session_disk() {
  local s dev b i
  for ((i = 0; i < 300; i++)); do
    for s in /sys/class/iscsi_session/session*; do
      [[ -e $s/targetname && $(cat "$s/targetname") == "$1" && $(cat "$s/initiatorname") == "$2" ]] || continue
      dev=$(readlink -f "$s/device")
      for b in "$dev"/target*/*:*:*:"$3"/block/*; do
        [[ -e $b ]] && { basename "$b"; return 0; }
      done
    done
    sleep 0.1
  done
  return 1
}
# session_luns TARGET INITIATOR: the LUN numbers the kernel found.
session_luns() {
  local s dev d
  for s in /sys/class/iscsi_session/session*; do
    [[ $(cat "$s/targetname") == "$1" && $(cat "$s/initiatorname") == "$2" ]] || continue
    dev=$(readlink -f "$s/device")
    for d in "$dev"/target*/*:*:*:*; do [[ -e $d ]] && echo "${d##*:}"; done
  done | sort -n | tr '\n' ' '
}
sysf() { tr -d '\n' <"/sys/block/$1/$2" | sed 's/ *$//'; }
disk_bytes() { echo $(($(sysf "$1" size) * 512)); }
# wait_disk_bytes DISK BYTES: until the kernel reports that size (10 s at most).
wait_disk_bytes() {
  local i
  for ((i = 0; i < 100; i++)); do
    (($(disk_bytes "$1") == $2)) && return 0
    sleep 0.1
  done
  return 1
}
cache_type() { cat /sys/block/"$1"/device/scsi_disk/*/cache_type; }
fua() { cat /sys/block/"$1"/device/scsi_disk/*/FUA; }
io_errors() { dmesg | grep -c "I/O error" || true; }
# wait_writes DISK: until DISK completed more than 64 writes from now (a fio
# started in the background really reaches the disk).
wait_writes() {
  local w0 i
  w0=$(awk '{print $5}' "/sys/block/$1/stat")
  for ((i = 0; i < 300; i++)); do
    (($(awk '{print $5}' "/sys/block/$1/stat") > w0 + 64)) && return 0
    sleep 0.1
  done
  return 1
}

fio_verify() { # fio_verify NAME FILE-OR-DIR-OPTION... : 4k random writes, CRC32C checked
  local name=$1
  shift
  fio --name="$name" --ioengine=libaio --direct=1 --bs=4k --iodepth=8 --verify=crc32c \
    --verify_fatal=1 --do_verify=1 "$@"
}

# fio_in_background NAME DISK SECONDS: fio writing with verify on DISK in the
# background (FIO_PID) while something happens to the target; returns once
# its writes reach the disk.
fio_in_background() {
  FIO_ERRS=$(io_errors)
  fio_verify "$1" --filename="/dev/$2" --rw=randwrite --size=32m --time_based --runtime="$3" \
    --verify_backlog=256 >"/tmp/fio-$1" 2>&1 &
  FIO_PID=$!
  wait_writes "$2"
}
# fio_came_through NAME: waits for that fio; it must end clean (every block
# verified) with no I/O error in the kernel log.
fio_came_through() {
  local rc=0
  wait "$FIO_PID" || rc=$?
  if ((rc == 0)); then pass "fio-verify-across-$1"; else
    tail -n 20 "/tmp/fio-$1" | sed 's/^/  | /'
    failc "fio-verify-across-$1" "fio exit $rc"
  fi
  expect_eq "no-io-error-across-$1" "$(io_errors)" "$FIO_ERRS"
}
