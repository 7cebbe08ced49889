#!/usr/bin/env bash
# Headless Chromium and its WebDriver for `make browser-test` (Debian's packages chromium and chromium-driver;
# Ubuntu has none, its chromium is a snap), installed only when `chromium` or `chromedriver` is missing. CI runs it as root; elsewhere
# it uses sudo when there is one.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "chromium and chromedriver already installed: $(chromium --version 2>/dev/null || true)"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "error: chromium / chromedriver missing, and neither root nor sudo to install them" \
         "(apt-get install chromium chromium-driver)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
${SUDO[@]+"${SUDO[@]}"} apt-get update
${SUDO[@]+"${SUDO[@]}"} apt-get install -y --no-install-recommends chromium chromium-driver
echo "installed: $(chromium --version 2>/dev/null || true)"
