#!/usr/bin/env bash
# Install Debian's Chromium for the browser test when it is missing (never a downloaded browser).
# Also, best effort, the emoji font so the screenshots show the page icons (not empty boxes).
set -euo pipefail

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
APT_UPDATED=""

apt_install() {
    if [ -z "$APT_UPDATED" ]; then
        $SUDO apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if [ ! -x /usr/bin/chromium ]; then
    echo "Installing chromium with apt (needed by the browser test)..."
    apt_install chromium
fi
if [ ! -x /usr/bin/chromium ]; then
    echo "chromium is still missing at /usr/bin/chromium: the browser test will fail." >&2
    exit 1
fi

if ! dpkg -s fonts-noto-color-emoji >/dev/null 2>&1; then
    apt_install fonts-noto-color-emoji 2>/dev/null ||
        echo "note: fonts-noto-color-emoji not installed; screenshots show emoji as boxes." >&2
fi
exit 0
