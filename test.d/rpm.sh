# The RPM packages test (crates/cli/tests/rpms.rs): Debian's rpm package, which brings
# rpmbuild (packaging/build-rpms.sh builds with it) and rpm (the test queries the packages
# and installs them into a scratch root with it). Sourced by test.sh; installs only what is
# missing.
rpm_need=()
for pair in rpmbuild:rpm rpm:rpm strip:binutils gzip:gzip; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || rpm_need+=("${pair#*:}")
done
if ((${#rpm_need[@]})); then
  # rpm twice when both of its programs are missing: once is enough.
  mapfile -t rpm_need < <(printf '%s\n' "${rpm_need[@]}" | sort -u)
  log "installing ${rpm_need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${rpm_need[@]}"
fi
unset rpm_need pair
