# Shared by the bench/*.sh scripts: `source "$SCRIPT_DIR/lib.sh"`.
#
# run_child CMD...      run CMD in the background and wait for it, so a signal is handled at
#                       once and cleanup can end it (its pid is in CHILD_PID meanwhile)
# stop_child            end that child, if any (for the scripts' cleanup traps)
# install_missing C=P... apt-get install package P for each command C that is missing
# cargo_on_path         put ~/.cargo/bin on PATH when cargo is not found
# write_section H FILE  put FILE, a section whose first line is the heading H, into
#                       $RESULTS_FILE: in place of the section with that heading, else at the
#                       end (uses $TMP for the new file); does nothing with WRITE_RESULTS=0

CHILD_PID=""

run_child() {
  local rc=0
  "$@" &
  CHILD_PID=$!
  wait "$CHILD_PID" || rc=$?
  CHILD_PID=""
  return "$rc"
}

stop_child() {
  if [[ -n "$CHILD_PID" ]]; then
    kill "$CHILD_PID" 2>/dev/null || true
    wait "$CHILD_PID" 2>/dev/null || true
  fi
}

write_section() {
  local heading=$1 section=$2
  [[ "${WRITE_RESULTS:-1}" != 0 ]] || return 0
  if [[ -f "$RESULTS_FILE" ]] && grep -qxF "$heading" "$RESULTS_FILE"; then
    awk -v h="$heading" -v sec="$section" '
      $0 == h { while ((getline l < sec) > 0) print l; skip = 1; next }
      skip && /^## / { skip = 0 }
      !skip { print }' "$RESULTS_FILE" >"$TMP/results.new"
  elif [[ -f "$RESULTS_FILE" ]]; then
    { cat "$RESULTS_FILE"; echo; cat "$section"; } >"$TMP/results.new"
  else
    { printf '# Benchmarks\n\n'; cat "$section"; } >"$TMP/results.new"
  fi
  cat "$TMP/results.new" >"$RESULTS_FILE"
  log "wrote section to $RESULTS_FILE"
}

install_missing() {
  local need=() pair
  for pair in "$@"; do
    command -v "${pair%%=*}" >/dev/null 2>&1 || need+=("${pair#*=}")
  done
  ((${#need[@]})) || return 0
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; }
}

cargo_on_path() {
  if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
}
