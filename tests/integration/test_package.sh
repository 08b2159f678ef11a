#!/usr/bin/env bash
# Installation: `cmake --install` into a DESTDIR lays down the daemon, the
# systemd unit and /etc/ringtgt/ringtgt.toml (keeping one that is already
# there); `cpack -G DEB` builds a .deb whose control data and file list
# dpkg-deb shows: package ringtgt, shared-library dependencies, the config as
# a conffile.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

BUILD=$(cd "$(dirname "$RINGTGT_BIN")" && pwd)
[[ -f $BUILD/CPackConfig.cmake ]] || fail "no CPackConfig.cmake in $BUILD"
command -v dpkg-deb >/dev/null || fail "dpkg-deb is missing"
etc_before=$([[ -e /etc/ringtgt ]] && echo yes || echo no)

log "cmake --install into a DESTDIR"
DEST="$TMP/root"
run_ok "$TMP/install.txt" env DESTDIR="$DEST" cmake --install "$BUILD" --prefix /usr
for f in usr/sbin/ringtgt usr/lib/systemd/system/ringtgt.service etc/ringtgt/ringtgt.toml var/lib/ringtgt \
  usr/share/doc/ringtgt/README.md usr/share/doc/ringtgt/examples/node1.toml; do
  [[ -e $DEST/$f ]] || fail "cmake --install did not lay down /$f"
done
[[ -x $DEST/usr/sbin/ringtgt ]] || fail "/usr/sbin/ringtgt is not executable"
expect_grep '^ExecStart=/usr/sbin/ringtgt --config /etc/ringtgt/ringtgt.toml$' \
  "$DEST/usr/lib/systemd/system/ringtgt.service" "the installed unit starts the installed daemon"
cmp -s "$DEST/etc/ringtgt/ringtgt.toml" "$RINGTGT_SRC/conf/ringtgt.toml" ||
  fail "the installed config is not conf/ringtgt.toml"
run_ok "$TMP/check.txt" "$DEST/usr/sbin/ringtgt" --check-config --config "$DEST/etc/ringtgt/ringtgt.toml"

log "a second install keeps a changed config"
echo "# changed by the operator" >>"$DEST/etc/ringtgt/ringtgt.toml"
run_ok "$TMP/install2.txt" env DESTDIR="$DEST" cmake --install "$BUILD" --prefix /usr
expect_grep '^# changed by the operator$' "$DEST/etc/ringtgt/ringtgt.toml" "the operator's config kept"

log "cpack -G DEB"
run_ok "$TMP/cpack.txt" cpack -G DEB --config "$BUILD/CPackConfig.cmake" -B "$TMP/pkg"
DEB=$(ls "$TMP"/pkg/ringtgt_*.deb 2>/dev/null | head -n1)
[[ -n $DEB ]] || { cat "$TMP/cpack.txt" >&2; fail "no ringtgt_*.deb built"; }
log "built $(basename "$DEB")"
dpkg-deb -I "$DEB" >"$TMP/info.txt"
expect_grep '^ Package: ringtgt$' "$TMP/info.txt" "package name"
expect_grep '^ Depends: .*libc6' "$TMP/info.txt" "shlibdeps filled Depends"
expect_grep '^ Depends: .*libprometheus-cpp-pull' "$TMP/info.txt" "prometheus-cpp in Depends"
expect_grep '^ Depends: .*liburing2' "$TMP/info.txt" "liburing in Depends"
dpkg-deb -e "$DEB" "$TMP/control"
expect_grep '^/etc/ringtgt/ringtgt.toml$' "$TMP/control/conffiles" "the config is a conffile"
dpkg-deb -c "$DEB" >"$TMP/contents.txt"
for f in ./usr/sbin/ringtgt ./usr/lib/systemd/system/ringtgt.service ./etc/ringtgt/ringtgt.toml \
  ./usr/share/doc/ringtgt/README.md; do
  grep -q " $f\$" "$TMP/contents.txt" || { cat "$TMP/contents.txt" >&2; fail "$f not in the package"; }
done
expect_no_grep ' \./usr/etc/' "$TMP/contents.txt" "config under /usr/etc"
if [[ $etc_before == no && -e /etc/ringtgt ]]; then
  fail "packaging wrote to this machine's /etc/ringtgt"
fi
