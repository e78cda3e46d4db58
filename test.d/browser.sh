# A headless browser for the web page's test (crates/cli/tests/gui.rs): Debian's chromium,
# certutil (to give the browser the cluster CA) and the npm package playwright-core, which
# drives /usr/bin/chromium (no browser download), in /opt/wulf-test/playwright.
# Sourced by test.sh; installs only what is missing.
PLAYWRIGHT_DIR=/opt/wulf-test/playwright
PLAYWRIGHT_VERSION=1.56.1
browser_pkgs=()
command -v chromium >/dev/null 2>&1 || browser_pkgs+=(chromium)
command -v certutil >/dev/null 2>&1 || browser_pkgs+=(libnss3-tools)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || browser_pkgs+=(fonts-dejavu-core)
# A nodejs that is not Debian's (NodeSource's) brings its own npm and conflicts with Debian's.
command -v node >/dev/null 2>&1 || browser_pkgs+=(nodejs npm)
if command -v node >/dev/null 2>&1 && ! command -v npm >/dev/null 2>&1; then
  browser_pkgs+=(npm)
fi
if ((${#browser_pkgs[@]})); then
  log "installing ${browser_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${browser_pkgs[@]}"
fi
if ! grep -qs "\"version\": \"$PLAYWRIGHT_VERSION\"" \
  "$PLAYWRIGHT_DIR/node_modules/playwright-core/package.json"; then
  log "installing playwright-core $PLAYWRIGHT_VERSION into $PLAYWRIGHT_DIR"
  mkdir -p "$PLAYWRIGHT_DIR"
  npm install --prefix "$PLAYWRIGHT_DIR" --no-audit --no-fund --loglevel=error \
    "playwright-core@$PLAYWRIGHT_VERSION"
fi
unset browser_pkgs
