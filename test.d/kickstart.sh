# The kickstart test (crates/cli/tests/kickstart.rs) builds its ISO with xorriso (Rock Ridge
# and Joliet names) and its initramfs with cpio. Sourced by test.sh; installs only what is
# missing.
ks_need=()
for pair in xorriso:xorriso cpio:cpio; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || ks_need+=("${pair#*:}")
done
if ((${#ks_need[@]})); then
  log "installing ${ks_need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${ks_need[@]}"
fi
unset ks_need pair
