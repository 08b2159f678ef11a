# Sourced inside an end-to-end guest: how a step reports. Every check prints
# "E2E-PASS name [uptime]" or "E2E-FAIL name: why [uptime]" on the report
# channel (the script's stdout, a serial port the host reads); finish prints
# "E2E: N passed, M failed" and powers the guest off.
npass=0
nfail=0

# Seconds since boot, so a slow step shows in the report.
up() { cut -d' ' -f1 /proc/uptime; }
pass() {
  echo "E2E-PASS $1 [$(up)]"
  npass=$((npass + 1))
}
failc() {
  echo "E2E-FAIL $1: $2 [$(up)]"
  nfail=$((nfail + 1))
}
finish() {
  echo "E2E: $npass passed, $nfail failed"
  sync
  echo o >/proc/sysrq-trigger
  sleep 60
}

# check NAME CMD...: CMD must succeed; its output tail is reported if not.
# The output stays in /tmp/out for the caller.
check() {
  local name=$1 rc=0
  shift
  "$@" >/tmp/out 2>&1 || rc=$?
  if ((rc == 0)); then
    pass "$name"
  else
    tail -n 25 /tmp/out | sed 's/^/  | /'
    failc "$name" "exit $rc: $*"
  fi
  return $rc
}
# check_fails NAME STATUS CMD...: CMD must fail with exit status STATUS.
check_fails() {
  local name=$1 want=$2 rc=0
  shift 2
  "$@" >/tmp/out 2>&1 || rc=$?
  if ((rc == want)); then
    pass "$name"
  else
    tail -n 25 /tmp/out | sed 's/^/  | /'
    failc "$name" "exit $rc, expected $want: $*"
  fi
}
expect_eq() {
  if [[ $2 == "$3" ]]; then pass "$1"; else failc "$1" "expected '$3', got '$2'"; fi
}
# fatal NAME WHY: a step the rest depends on failed; report and stop. A
# script may define fatal_context to print what explains it (a log tail).
fatal() {
  failc "$1" "$2"
  declare -F fatal_context >/dev/null && fatal_context
  finish
}
