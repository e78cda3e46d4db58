# A real recursive resolver for the DNS forwarder's test (crates/cli/tests/dns.rs): Debian's
# unbound, run by the test in a network namespace with a config of its own. Installed without
# starting its system service (a policy-rc.d that says no, Debian's way, only while apt runs).
# Sourced by test.sh; installs only what is missing.
if ! command -v unbound >/dev/null 2>&1; then
  log "installing unbound (not started as a service)"
  export DEBIAN_FRONTEND=noninteractive
  unbound_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    unbound_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends unbound
  if [ -n "$unbound_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
  unset unbound_policy
fi
