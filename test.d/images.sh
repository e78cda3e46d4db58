# The image build test (crates/cli/tests/image_build.rs): mmdebstrap builds a Debian
# minbase image (from deb.debian.org, into the test's own directory; nothing is cached) and
# umoci makes the OCI image layout the container import reads. Sourced by test.sh; installs
# only what is missing. The --rpm test (crates/cli/tests/image_rpm.rs) needs dnf, createrepo_c,
# rpmbuild and gpg.
img_need=()
for pair in mmdebstrap:mmdebstrap umoci:umoci unshare:util-linux dnf:dnf createrepo_c:createrepo-c rpmbuild:rpm gpg:gnupg; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || img_need+=("${pair#*:}")
done
if ((${#img_need[@]})); then
  log "installing ${img_need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${img_need[@]}"
fi
unset img_need pair
