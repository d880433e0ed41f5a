#!/usr/bin/env bash
# Debian packages the tests use: socat (the virtual board's pseudo-terminal) and
# mosquitto (a real MQTT broker on loopback) and chromium (headless: the HTML
# report's screenshot test) and postgresql (a private cluster made by initdb in a
# temporary folder; no system service is started). Idempotent and quiet: installs only
# what is missing, runs `apt-get update` first when it has to install.
set -euo pipefail
need=()
command -v socat >/dev/null 2>&1 || need+=(socat)
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
  || need+=(postgresql)
if [ "${#need[@]}" -eq 0 ]; then
  echo "install-apt: socat, mosquitto, chromium and postgresql present"
  exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-apt: need root (or sudo) to install: ${need[*]}" >&2; exit 1; }
  SUDO=(sudo -n)
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-apt: apt-get install ${need[*]} failed (see above)" >&2
  exit 1
fi
echo "install-apt: installed ${need[*]}"
