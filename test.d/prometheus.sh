# A Prometheus server for the metrics test (crates/cli/tests/metrics.rs): Debian's
# `prometheus` package. The test starts its own server (its own config, port and storage
# directory), so the packaged service is stopped and kept from starting. Sourced by test.sh;
# installs only what is missing.
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  log "installing prometheus"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # No service started by the package's scripts (policy-rc.d 101: "action forbidden").
  had_policy=0
  if [ -e /usr/sbin/policy-rc.d ]; then had_policy=1; fi
  if [ "$had_policy" = 0 ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
  fi
  apt-get install -y -qq --no-install-recommends prometheus
  if [ "$had_policy" = 0 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
