#!/bin/bash
# Usage: check.sh CXX DIR — DIR holds <layer>.includes (one include folder a
# line), written by CMake from each layer library's include directories.
set -u
cxx=$1 dir=$2
fail=0

probe() {  # probe LAYER HEADER → compiler's exit status
  local layer=$1 header=$2 flags=()
  while IFS= read -r d; do [ -n "$d" ] && flags+=("-I$d"); done <"$dir/$layer.includes"
  printf '#include "%s"\n' "$header" |
    "$cxx" -std=c++20 -fsyntax-only "${flags[@]}" -x c++ - 2>"$dir/probe.err"
}

may() {  # a layer sees the layers below it
  if probe "$1" "$2"; then
    echo "ok: $1 may include $2"
  else
    echo "FAIL: $1 cannot include $2, which is below it:"; sed 's/^/  /' "$dir/probe.err"; fail=1
  fi
}

must_not() {  # and nothing above or beside it
  if probe "$1" "$2"; then
    echo "FAIL: $1 can include $2: the build does not keep it out"; fail=1
  elif grep -q 'No such file' "$dir/probe.err"; then
    echo "ok: $1 cannot include $2"
  else
    echo "FAIL: $1 including $2 failed for another reason:"; sed 's/^/  /' "$dir/probe.err"; fail=1
  fi
}

may reactor ringtgt/common/atomic_file.hpp
may reactor ringtgt/metrics/counters.hpp
must_not reactor ringtgt/storage/backend.hpp
must_not reactor ringtgt/metrics/collector.hpp
may storage ringtgt/reactor/io_engine.hpp
must_not storage ringtgt/scsi/logical_unit.hpp
must_not storage ringtgt/config/config.hpp
may scsi ringtgt/storage/backend.hpp
must_not scsi ringtgt/iscsi/connection.hpp
must_not scsi ringtgt/lun/lun_factory.hpp
may iscsi ringtgt/scsi/logical_unit.hpp
must_not iscsi ringtgt/net/server.hpp
must_not iscsi ringtgt/config/config.hpp
may config ringtgt/storage/write_ack_policy.hpp
must_not config ringtgt/scsi/logical_unit.hpp
must_not config ringtgt/net/server.hpp
may lun ringtgt/config/config.hpp
may lun ringtgt/scsi/logical_unit.hpp
must_not lun ringtgt/net/server.hpp
may net ringtgt/iscsi/connection.hpp
must_not net ringtgt/admin/service.hpp
must_not net ringtgt/lun/lun_factory.hpp
may admin ringtgt/net/server.hpp
may admin ringtgt/metrics/collector.hpp
# Private headers stay beside their sources, out of every other layer's reach.
must_not iscsi commands.hpp
must_not lun ringtgt/scsi/commands.hpp
exit $fail
