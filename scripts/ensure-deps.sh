#!/usr/bin/env bash
# Installs what `make test` needs on a fresh machine with Go: chrony (a real
# NTP server the clock tests start on a loopback port). Safe to run again.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

if ! have chronyd; then
  echo "ensure-deps: installing chrony (the clock tests run a real NTP server on loopback)" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y chrony >/dev/null 2>&1 || {
    $SUDO apt-get update >/dev/null 2>&1
    $SUDO apt-get install -y chrony >/dev/null
  }
  # A package install may start the system chronyd; Meridian's tests start
  # their own on loopback ports and never touch the system clock.
fi
have chronyd && echo "ensure-deps: chronyd present" >&2
