#!/usr/bin/env bash
# Installs what `make test` needs on a fresh machine with Go: chrony (a real
# NTP server the clock tests start on a loopback port) and Chromium (the
# browser test of the /debug pages). Safe to run again.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

install() { # install PACKAGE WHY
  echo "ensure-deps: installing $1 ($2)" >&2
  $SUDO apt-get install -y "$1" >/dev/null 2>&1 || {
    $SUDO apt-get update >/dev/null 2>&1
    $SUDO apt-get install -y "$1" >/dev/null
  }
}

# A package install may start the system chronyd; Meridian's tests start
# their own on loopback ports and never touch the system clock.
have chronyd || install chrony "the clock tests run a real NTP server on loopback"
have chromium || install chromium "the browser test loads the /debug pages in headless Chromium"
have chronyd && echo "ensure-deps: chronyd present" >&2
have chromium && echo "ensure-deps: chromium present" >&2
