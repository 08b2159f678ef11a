#!/usr/bin/env bash
# Runs libiscsi's iscsi-test-cu conformance suite against a private ringtgt
# daemon and compares the outcome with tests/conformance/expected.txt.
#
#   tests/conformance/run.sh            # check: exit 1 if a listed test does not pass
#   tests/conformance/run.sh --update   # rewrite expected.txt with what passes now
#   tests/conformance/run.sh --only REGEX   # run only ALL.* tests matching REGEX (no check)
#   tests/conformance/run.sh --peer tgt     # the same suite against Debian's tgt (root; no check)
#
# Environment: RINGTGT_BIN (daemon, default build/ringtgt), RINGTGT_SRC (repo
# root), PER_TEST_TIMEOUT (s, default 60), SUITE_TIMEOUT (s per run, default 840),
# SUBSET (a regex on Suite.Test: run and check only those tests),
# RESULTS_DIR (keep logs and results there instead of a temp dir),
# ISCSI_TEST_CU (the tool, default iscsi-test-cu).
#
# Every test runs in its own iscsi-test-cu process (-t ALL.Suite.Test) so a
# hang is bounded per test and the output of each test is its own. The other
# families (LINUX, SCSI, iSCSI) list the same test functions as ALL under the
# same Suite.Test names; their results are taken from the ALL run.
#
# The suite runs against five targets of one daemon: a fully provisioned LU,
# a thin-provisioned one, a thin one with 4 KiB physical blocks, a read-only
# one and a thin one that allows SANITIZE (RUNS="full thin thin4k readonly
# sanitize" by default; RUNS=thin runs one). The runs go in up to LANES
# (default 3) lanes side by side, each lane its runs one after the other:
# every run has its own target and LU, and most of a test's time is waiting
# (logins, SANITIZE's 60 s steps), so this about halves the wall time.
# LANES=1 runs them one after the other.
# A run with a list run-RUN.txt beside this script runs only the tests listed
# there (thin4k: those that need several logical blocks per physical block;
# readonly: those that need a write-protected LU; sanitize: the SANITIZE
# tests, run with iscsi-test-cu -S).
# A name's verdict is judged over the runs that ran it: failed if it failed
# in any, else passed if it passed in any, else skipped.
#
# RUNS=rbd runs the suite on one more LU, an RBD image (the cluster is the
# caller's: tests/ceph/conformance.sh starts one), named by
# RBD_IMAGE (POOL/IMAGE, 256 MiB), RBD_CONF, RBD_CLIENT and RBD_KEYRING. Its
# list is expected.txt minus the names in rbd-differences.txt, each with why.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=${RINGTGT_SRC:-$(cd "$here/../.." && pwd)}
bin=${RINGTGT_BIN:-$src/build/ringtgt}
tool=${ISCSI_TEST_CU:-iscsi-test-cu}
per_test=${PER_TEST_TIMEOUT:-60}
suite_budget=${SUITE_TIMEOUT:-840}
expected=$here/expected.txt
differences=
if [[ ${RUNS:-} == rbd ]]; then
  : "${RBD_IMAGE:?RUNS=rbd needs RBD_IMAGE, RBD_CONF, RBD_CLIENT and RBD_KEYRING}"
  differences=$here/rbd-differences.txt
fi
excluded=$here/excluded.txt

mode=check
only=
peer=
while [[ $# -gt 0 ]]; do
  case $1 in
    --update) mode=update ;;
    --only) mode=only; only=$2; shift ;;
    --peer) peer=$2; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if ! command -v "$tool" >/dev/null; then
  # A check that cannot run fails: scripts/deps.sh installs the tool.
  echo "run.sh: $tool not installed (Debian: libiscsi-bin; scripts/deps.sh installs it)" >&2
  exit 2
fi
if [[ ! -x $bin ]]; then
  echo "run.sh: daemon binary $bin not found" >&2
  exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ringtgt-conf.XXXXXX")
results_dir=${RESULTS_DIR:-$work}
mkdir -p "$results_dir/logs"
daemon_pid=
keep_logs=   # set when a check fails: the temp dir with the logs is kept
cleanup() {
  if [[ -n $peer ]]; then
    stop_peer
  elif [[ -n $daemon_pid ]] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
  fi
  rm -rf "$work/state" "$work"/*.img
  if [[ $results_dir != "$work" || -z $keep_logs ]]; then rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free port: the kernel's choice, or one of RINGTGT_TEST_PORTS=LO-HI (a
# range of one's own on a machine shared with others).
if [[ ${RINGTGT_TEST_PORTS:-} =~ ^([0-9]+)-([0-9]+)$ ]]; then
  port=$(python3 -c 'import socket, sys
for p in range(int(sys.argv[1]), int(sys.argv[2]) + 1):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}")
else
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
fi
iqn=iqn.2025-01.org.ringtgt:conformance
lun=0
init1=iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test
init2=iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2
case $peer in
  '') ;;
  tgt) lun=1 ;;  # tgt's LUN 0 is its controller
  *) echo "run.sh: unknown peer $peer (known: tgt)" >&2; exit 2 ;;
esac
runs=${RUNS:-full thin thin4k readonly sanitize}
# tgt has no SANITIZE to allow: its peer run leaves that LU out.
[[ -n $peer && -z ${RUNS:-} ]] && runs="full thin thin4k readonly"

cat >"$work/ringtgt.toml" <<EOF
workers = 2
log_level = "warn"
state_dir = "state"

[[portal]]
listen = "127.0.0.1:$port"

[iscsi]
# Sanitize.Reset sleeps 60 s between TEST UNIT READYs without answering
# NOP-Ins: the connection must outlive that, or each TEST UNIT READY is the
# first of a new session and hears its power-on unit attention.
nop_timeout = 120

[[target]]
name = "$iqn-full"
alias = "conformance-full"

  [[target.lun]]
  number = $lun
  path = "lun-full.img"
  size = "256M"
  block_size = 512
  write_ack = "writethrough"
  provisioning = "full"

[[target]]
name = "$iqn-thin"
alias = "conformance-thin"

  [[target.lun]]
  number = $lun
  path = "lun-thin.img"
  size = "256M"
  block_size = 512
  write_ack = "writethrough"
  provisioning = "thin"

[[target]]
name = "$iqn-thin4k"
alias = "conformance-thin4k"

  [[target.lun]]
  number = $lun
  path = "lun-thin4k.img"
  size = "256M"
  block_size = 512
  physical_block_size = 4096
  write_ack = "writethrough"
  provisioning = "thin"

[[target]]
name = "$iqn-readonly"
alias = "conformance-readonly"

  [[target.lun]]
  number = $lun
  path = "lun-readonly.img"
  size = "256M"
  block_size = 512
  read_only = true
  provisioning = "thin"

[[target]]
name = "$iqn-sanitize"
alias = "conformance-sanitize"

  [[target.lun]]
  number = $lun
  path = "lun-sanitize.img"
  size = "48M"
  block_size = 512
  write_ack = "writethrough"
  provisioning = "thin"
  allow_sanitize = true
  # 12 s an OVERWRITE: Sanitize.Reset checks, 4-5 s after starting one,
  # that it still runs after task management, resets and a new login.
  sanitize_rate = "4M"
EOF

if [[ -n $differences ]]; then
  cat >>"$work/ringtgt.toml" <<EOF

[[target]]
name = "$iqn-rbd"
alias = "conformance-rbd"

  [[target.lun]]
  number = $lun
  path = "rbd:$RBD_IMAGE"
  block_size = 512
  write_ack = "writethrough"
  provisioning = "thin"
  [target.lun.rbd]
  conf = "$RBD_CONF"
  client = "$RBD_CLIENT"
  keyring = "$RBD_KEYRING"
EOF
fi

start_daemon() {
  "$bin" --config "$work/ringtgt.toml" >>"$results_dir/daemon.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 100); do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then return 0; fi
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "run.sh: daemon did not start; log:" >&2
  tail -20 "$results_dir/daemon.log" >&2
  return 1
}
[[ $peer == tgt ]] && source "$here/tgt_peer.sh"
# A read-only LUN is never created by the daemon: make its (empty) file.
truncate -s 256M "$work/lun-readonly.img"
start_daemon || exit 2

# Leaf tests of the ALL family, minus the excluded ones.
"$tool" -l | grep -E '^[A-Za-z]+\.[^.]+\.[^.]+$' >"$work/all-names.txt"
grep -E '^ALL\.' "$work/all-names.txt" >"$work/run-names.txt"
if [[ -f $excluded ]]; then
  grep -vE '^\s*(#|$)' "$excluded" | awk '{print $1}' >"$work/excl.txt"
  grep -vxFf "$work/excl.txt" "$work/run-names.txt" >"$work/tmp.txt" && mv "$work/tmp.txt" "$work/run-names.txt"
fi
if [[ $mode == only ]]; then
  grep -E -- "$only" "$work/run-names.txt" >"$work/tmp.txt"; mv "$work/tmp.txt" "$work/run-names.txt"
fi
# SUBSET=REGEX, matched against Suite.Test (e.g. '^(Read10|Unmap)\.'): a check
# of those tests only; the list's other names are not expected to pass then.
in_subset() {
  if [[ -z ${SUBSET:-} ]]; then cat; return; fi
  awk '{ n = $1; sub(/^[^.]*\./, "", n); if (n ~ ENVIRON["SUBSET"]) print }'
}
in_subset <"$work/run-names.txt" >"$work/tmp.txt"; mv "$work/tmp.txt" "$work/run-names.txt"

# run_suite RUN: every name of run-names.txt against the LU of target
# $iqn-RUN; one line "NAME VERDICT" per test in results-RUN.txt, logs in
# logs/RUN/.
run_suite() {
  local run=$1 url=iscsi://127.0.0.1:$port/$iqn-$1/$lun
  local out=$results_dir/results-$run.txt n=0 start=$SECONDS name log rc verdict sanitize_flag=
  local timeout_s=$per_test
  # -S: the SANITIZE tests, only on the LU that allows SANITIZE. Sanitize.Reset
  # waits for the end of its sanitize in steps of 60 s (two of them: the sanitize,
  # then the new session's unit attention): 200 s for each there.
  if [[ $run == sanitize ]]; then
    sanitize_flag=-S
    ((timeout_s < 200)) && timeout_s=200
  fi
  local names=$work/run-names.txt subset=$here/run-$run.txt
  if [[ -f $subset ]]; then
    names=$work/run-names-$run.txt
    grep -vE '^\s*(#|$)' "$subset" | awk '{print $1}' | grep -xFf - "$work/run-names.txt" >"$names"
  fi
  mkdir -p "$results_dir/logs/$run"
  : >"$out"
  while read -r name; do
    n=$((n + 1))
    log=$results_dir/logs/$run/$name.log
    if (( SECONDS - start > suite_budget )); then
      echo "$name failed suite-time-budget-exhausted" >>"$out"
      continue
    fi
    # The URL twice: a second session to the same LU for the MultipathIO tests.
    timeout -k 5 "$timeout_s" "$tool" -d $sanitize_flag -v -i "$init1" -I "$init2" -t "$name" "$url" "$url" \
      >"$log" 2>&1 </dev/null
    rc=$?
    verdict=$(python3 "$here/classify.py" "$log" "$rc")
    if ! kill -0 "$daemon_pid" 2>/dev/null; then
      if [[ ${lane_restarts:-1} == 1 ]]; then
        verdict="failed daemon-died (restarted)"
        wait "$daemon_pid" 2>/dev/null
        echo "run.sh: daemon died during $name ($run LU); restarting" >&2
        start_daemon || exit 2
      else
        verdict="failed daemon-died"
      fi
    fi
    echo "$name $verdict" >>"$out"
    [[ -n ${VERBOSE:-} ]] && echo "[$run $n] $name $verdict"
  done <"$names"
  echo "run.sh: ran $n tests on the $run LU in $((SECONDS - start)) s" >&2
}

# run_lane RUN...: those runs one after the other. A lane that finds the daemon
# dead says so for each test; only lane 0 (the foreground) starts it again, so
# two lanes never start two daemons on one port.
run_lane() {
  local run
  for run in "$@"; do run_suite "$run"; done
}
read -ra run_list <<<"$runs"
lanes=${LANES:-3}
((lanes < 1)) && lanes=1
((lanes > ${#run_list[@]})) && lanes=${#run_list[@]}
# The sanitize run (mostly SANITIZE's waits) has the last lane to itself; the
# others are dealt round the remaining lanes.
declare -a lane_runs lane_pids=()
spread=$lanes
if ((lanes > 1)) && [[ " $runs " == *" sanitize "* ]]; then
  spread=$((lanes - 1))
  lane_runs[spread]=sanitize
fi
i=0
for run in "${run_list[@]}"; do
  [[ $run == sanitize && $spread != "$lanes" ]] && continue
  lane_runs[i % spread]+="$run "
  i=$((i + 1))
done
for ((l = 1; l < lanes; l++)); do
  # shellcheck disable=SC2086
  lane_restarts=0 run_lane ${lane_runs[l]} &
  lane_pids+=($!)
done
# shellcheck disable=SC2086
lane_restarts=1 run_lane ${lane_runs[0]}
for pid in "${lane_pids[@]}"; do wait "$pid" || exit 2; done

# One verdict per name over the runs: failed in any run -> failed (with that
# run's reason), else passed in any -> passed, else skipped.
results=$results_dir/results.txt
python3 - "$results" $(for run in $runs; do echo "$results_dir/results-$run.txt"; done) <<'PY'
import sys
out, files = sys.argv[1], sys.argv[2:]
order, verdicts = [], {}
for f in files:
    run = f.rsplit("results-", 1)[1][:-len(".txt")]
    for line in open(f):
        name, _, verdict = line.rstrip("\n").partition(" ")
        if name not in verdicts:
            order.append(name)
            verdicts[name] = []
        verdicts[name].append((run, verdict))
with open(out, "w") as o:
    for name in order:
        vs = verdicts[name]
        failed = [(r, v) for r, v in vs if v.startswith("failed")]
        if failed:
            r, v = failed[0]
            line = v + " [" + r + " LU]"
        elif any(v == "passed" for _, v in vs):
            line = "passed"
        else:  # skipped everywhere: each run's reason, once if they agree
            reasons = []
            for r, v in vs:
                if all(v != seen for _, seen in reasons):
                    reasons.append((r, v))
            line = vs[0][1] if len(reasons) == 1 else "; ".join(
                v + " [" + r + " LU]" for r, v in reasons)
        o.write(name + " " + line + "\n")
PY

# Map onto every family: FAMILY.Suite.Test takes the result of ALL.Suite.Test.
declare -A verdict_of
while read -r name rest; do verdict_of[${name#ALL.}]=$rest; done <"$results"
full=$results_dir/results-all-families.txt
: >"$full"
while read -r name; do
  key=${name#*.}
  v=${verdict_of[$key]:-}
  if [[ -z $v ]]; then
    if [[ $mode == only ]]; then continue; fi
    v="failed excluded"
  fi
  echo "$name $v" >>"$full"
done <"$work/all-names.txt"

echo
printf '%-8s %7s %7s %8s\n' family passed failed skipped
for fam in $(awk -F. '{print $1}' "$full" | sort -u); do
  awk -v f="$fam" -F'[ .]' '$1==f {c[$4]++} END {printf "%-8s %7d %7d %8d\n", f, c["passed"], c["failed"], c["skipped"]}' "$full"
done
echo

if [[ $mode == only || -n $peer ]]; then
  [[ $mode == only ]] && cat "$full"
  exit 0
fi

awk '$2=="passed" {print $1}' "$full" | sort >"$work/passed.txt"
if [[ $mode == update && -n $differences ]]; then
  echo "run.sh: --update writes the file LUs' list; edit rbd-differences.txt by hand" >&2
  exit 2
fi
if [[ $mode == update ]]; then
  if [[ -f $expected ]]; then
    dropped=$(grep -vE '^\s*(#|$)' "$expected" | sort | comm -23 - "$work/passed.txt")
    [[ -n $dropped ]] && { echo "run.sh: no longer passing (dropped from the list):"; echo "$dropped"; }
  fi
  { echo "# libiscsi iscsi-test-cu tests that pass against ringtgt; generated by"
    echo "# tests/conformance/run.sh --update. test_conformance.sh fails if one does not pass."
    cat "$work/passed.txt"; } >"$expected"
  echo "run.sh: wrote $(wc -l <"$work/passed.txt") tests to $expected"
  exit 0
fi

status=0
if [[ -f $expected ]]; then
  grep -vE '^\s*(#|$)' "$expected" | in_subset | sort >"$work/expected.txt"
  if [[ -n $differences ]]; then
    # What passes on a file LU but not on this one, each line with its reason.
    grep -vE '^\s*(#|$)' "$differences" | awk '{print $1}' | sort >"$work/differ.txt"
    comm -23 "$work/expected.txt" "$work/differ.txt" >"$work/tmp.txt"
    mv "$work/tmp.txt" "$work/expected.txt"
    fixed=$(comm -12 "$work/differ.txt" "$work/passed.txt")
    [[ -n $fixed ]] && { echo "Listed in $differences but passing now (drop them):"; echo "$fixed"; }
  fi
  regress=$(comm -23 "$work/expected.txt" "$work/passed.txt")
  if [[ -n $regress ]]; then
    echo "REGRESSIONS: listed in expected.txt but not passing:"
    while read -r t; do grep -m1 "^$t " "$full" || echo "$t (not run)"; done <<<"$regress"
    status=1
    keep_logs=1
    echo "logs: $results_dir/logs (daemon: $results_dir/daemon.log)"
  fi
  new=$(comm -13 "$work/expected.txt" "$work/passed.txt")
  if [[ -n $new ]]; then
    echo "Passing but not in expected.txt (add with run.sh --update):"
    echo "$new"
  fi
else
  echo "run.sh: $expected missing; run with --update" >&2
  status=1
fi
[[ $status == 0 ]] && echo "conformance: all $(wc -l <"$work/expected.txt") expected tests pass"
exit $status
