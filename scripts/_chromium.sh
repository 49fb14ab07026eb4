# Sourced by test.sh: make sure Debian's Chromium is there for the browser tests (tests/web/).
# Idempotent and quiet once installed; fails loudly (exit 2) when it cannot install it, rather
# than letting the browser tests be skipped. CUSTOS_CHROMIUM=PATH names another Chromium binary.
if [ -z "${CUSTOS_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests (apt-get)" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo -n"; fi
  if ! { $SUDO apt-get update -qq >/dev/null && \
         DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null; }; then
    echo "error: could not install chromium with apt-get; the browser tests need it" \
         "(install the chromium package, or set CUSTOS_CHROMIUM to a Chromium binary)" >&2
    exit 2
  fi
fi
