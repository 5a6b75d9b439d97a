#!/usr/bin/env bash
# Test package.host: makes the Debian packages of this build tree with cpack, in a temporary
# folder, and checks what a tech would find: the architecture, the Depends line, the files at
# their places (programs, unit, board file, system user), no test program or stand-in backend,
# the unit pointing at files the package ships, and the packaged programs running from the
# unpacked package: --version, --help, and waybilld recording a replayed drive with the
# packaged board file and the packaged example configuration.
#
#   check_debs.sh BUILD_DIR BOARD VERSION
set -euo pipefail

build=$1 board=$2 version=$3
arch=$(dpkg --print-architecture)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/waybill-package-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

if ! cpack --config "$build/CPackConfig.cmake" -B "$tmp/out" >"$tmp/cpack.log" 2>&1; then
  cat "$tmp/cpack.log" >&2
  echo "FAIL: cpack failed (above)" >&2
  exit 1
fi

daemon_deb=$tmp/out/waybill_${version}_${arch}.deb
bridge_deb=$tmp/out/waybill-bridge_${version}_${arch}.deb
for deb in "$daemon_deb" "$bridge_deb"; do
  if [[ ! -f $deb ]]; then
    echo "FAIL: cpack made no $(basename "$deb"); it made: $(ls "$tmp/out")" >&2
    exit 1
  fi
done
made=$(find "$tmp/out" -maxdepth 1 -name '*.deb' | wc -l)
[[ $made -eq 2 ]] || fail "expected 2 packages, cpack made $made: $(ls "$tmp/out")"

field() { dpkg-deb --field "$1" "$2"; }
# Paths in the package, without the leading "./".
contents() { dpkg-deb --contents "$1" | awk '{ print $6 }' | sed 's|^\./||'; }

check_package() {
  local deb=$1 name=$2
  shift 2
  local f
  [[ $(field "$deb" Package) == "$name" ]] || fail "$deb: Package is '$(field "$deb" Package)'"
  [[ $(field "$deb" Architecture) == "$arch" ]] ||
    fail "$name: Architecture is '$(field "$deb" Architecture)', not $arch"
  [[ $(field "$deb" Version) == "$version" ]] ||
    fail "$name: Version is '$(field "$deb" Version)', not $version"
  local depends
  depends=$(field "$deb" Depends)
  for f in libc6 libstdc++6 libsqlite3-0 libspdlog1.10-fmt9; do
    [[ ", $depends," == *", $f "* || ", $depends," == *", $f,"* ]] ||
      fail "$name: Depends does not name $f: '$depends'"
  done
  contents "$deb" >"$tmp/$name.files"
  for f in "$@"; do
    grep -qx "$f" "$tmp/$name.files" || fail "$name: no /$f in the package"
  done
  # Only the programs a tech runs: no test program, no stand-in backend.
  local programs
  programs=$(grep '^usr/bin/.' "$tmp/$name.files" | sort | tr '\n' ' ')
  echo "$name: $(field "$deb" Installed-Size) KiB installed; programs: $programs" >&2
  echo "$name: Depends: $depends" >&2
  # Extracted, not piped: in `dpkg-deb --ctrl-tarfile | tar -t | grep -q` under pipefail, a
  # reader that stops early (tar at the end-of-archive blocks, grep at its match) can SIGPIPE the
  # writer, which made this check fail at random.
  dpkg-deb --control "$deb" "$tmp/$name.control"
  [[ -x $tmp/$name.control/postinst ]] || fail "$name: no executable postinst"
}

check_package "$daemon_deb" waybill \
  usr/bin/waybilld usr/bin/waybillctl \
  usr/lib/systemd/system/waybilld.service \
  "usr/share/waybill/boards/$board/board.toml" \
  usr/lib/sysusers.d/waybill.conf \
  usr/share/doc/waybill/waybill.example.toml
check_package "$bridge_deb" waybill-bridge \
  usr/bin/waybill-bridge \
  usr/lib/systemd/system/waybill-bridge.service \
  usr/lib/sysusers.d/waybill-bridge.conf \
  usr/share/doc/waybill/bridge.example.toml
[[ $(grep '^usr/bin/.' "$tmp/waybill.files" | sort | tr '\n' ' ') == \
   "usr/bin/waybillctl usr/bin/waybilld " ]] ||
  fail "waybill: programs other than waybilld and waybillctl"
[[ $(grep '^usr/bin/.' "$tmp/waybill-bridge.files" | tr '\n' ' ') == "usr/bin/waybill-bridge " ]] ||
  fail "waybill-bridge: programs other than waybill-bridge"

# Both unpacked into one root, as dpkg would install them: no file in both.
root=$tmp/root
dpkg-deb --extract "$daemon_deb" "$root"
dpkg-deb --extract "$bridge_deb" "$root"
shared=$(comm -12 <(grep -v '/$' "$tmp/waybill.files" | sort) \
                  <(grep -v '/$' "$tmp/waybill-bridge.files" | sort))
[[ -z $shared ]] || fail "files in both packages: $shared"

# The unit starts files that the package ships.
exec_start=$(sed -n 's/^ExecStart=//p' "$root/usr/lib/systemd/system/waybilld.service")
read -r -a cmd <<<"$exec_start"
[[ ${cmd[0]} == /usr/bin/waybilld ]] || fail "waybilld.service starts '${cmd[0]}'"
unit_board=""
for i in "${!cmd[@]}"; do
  [[ ${cmd[$i]} == --board ]] && unit_board=${cmd[$((i + 1))]}
done
[[ -f $root$unit_board ]] || fail "waybilld.service names the board file '$unit_board'," \
                                  "which the package does not ship"

# The packaged programs run from the unpacked package.
v=$("$root/usr/bin/waybilld" --version) || fail "waybilld --version exits $?"
[[ $v == *"$version"* ]] || fail "waybilld --version says '$v', the package is $version"
"$root/usr/bin/waybilld" --help >"$tmp/waybilld.help"
grep -q -- --board "$tmp/waybilld.help" || fail "waybilld --help names no --board"
v=$("$root/usr/bin/waybillctl" --version) || fail "waybillctl --version exits $?"
[[ $v == *"$version"* ]] || fail "waybillctl --version says '$v'"
"$root/usr/bin/waybill-bridge" --help >/dev/null || fail "waybill-bridge --help exits $?"

# A replay board runs as it would on the unit: the packaged board file (which finds its
# recording under /usr/share/waybill), the example configuration, a whole drive as fast as the
# daemon reads, then a clean stop. Hardware boards have nothing to read here.
board_toml=$root/usr/share/waybill/boards/$board/board.toml
if grep -Eq '^source[[:space:]]*=[[:space:]]*"replay"' "$board_toml"; then
  rc=0
  env -u WAYBILL_REPLAY_DIR -u WAYBILL_DATA_DIR timeout 90 "$root/usr/bin/waybilld" \
    --board "$board_toml" --config "$root/usr/share/doc/waybill/waybill.example.toml" \
    --data-dir "$tmp/data" --api-port 0 --replay-speed 0 --stop-at-end-of-replay \
    --log-level warn >"$tmp/waybilld.log" 2>&1 || rc=$?
  if [[ $rc -ne 0 ]]; then
    tail -20 "$tmp/waybilld.log" >&2
    fail "the packaged waybilld on the packaged board $board exits $rc"
  fi
  "$root/usr/bin/waybillctl" outbox stats --db "$tmp/data/outbox.db" --json >"$tmp/stats.json" ||
    fail "waybillctl outbox stats on what the packaged waybilld recorded exits $?"
  grep -q '"fix"' "$tmp/stats.json" || fail "no fixes recorded: $(cat "$tmp/stats.json")"
fi

if [[ $failures -gt 0 ]]; then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "packages of $build ($arch, board $board): all checks passed"
