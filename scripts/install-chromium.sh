#!/usr/bin/env bash
# Install Debian's chromium and chromium-driver for the UI's browser tests (tests/service/ui/test_browser.py),
# if they are missing. Idempotent: nothing happens when both are on PATH. Exits 0 when they are
# there afterwards, 77 when they are missing and cannot be installed here (no root or no apt-get,
# or apt failed): the browser tests then skip with a loud reason, and .ci/run says so again.
set -uo pipefail
have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }
if have; then
  exit 0
fi
log="${TMPDIR:-/tmp}/latentserve-install-chromium.log"
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: chromium/chromium-driver missing, and installing them needs root and apt-get" >&2
  exit 77
fi
echo "install-chromium: apt-get install chromium chromium-driver (log: $log)" >&2
export DEBIAN_FRONTEND=noninteractive
apt=(apt-get -o DPkg::Lock::Timeout=600)
# try the package lists we have first; update them only when that fails
if ! "${apt[@]}" install -y -q chromium chromium-driver >"$log" 2>&1 </dev/null; then
  "${apt[@]}" update -q >>"$log" 2>&1 </dev/null
  "${apt[@]}" install -y -q chromium chromium-driver >>"$log" 2>&1 </dev/null
fi
if have; then
  exit 0
fi
echo "install-chromium: apt-get could not install chromium chromium-driver (see $log)" >&2
exit 77
