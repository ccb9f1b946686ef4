#!/usr/bin/env bash
# Install Debian's openjdk-17-jre-headless for the Spark tests (pyspark needs Java 17+), if `java` is
# missing. Idempotent. Exits 0 when java is there afterwards, 77 when it is missing and cannot be
# installed here (no root or no apt-get, or apt failed): the Spark tests then skip with a loud
# reason, and .ci/run says so again.
set -uo pipefail
if command -v java >/dev/null 2>&1 || [ -n "${JAVA_HOME:-}" ]; then
  exit 0
fi
log="${TMPDIR:-/tmp}/latentserve-install-java.log"
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-java: java missing, and installing openjdk-17-jre-headless needs root and apt-get" >&2
  exit 77
fi
echo "install-java: apt-get install openjdk-17-jre-headless (log: $log)" >&2
export DEBIAN_FRONTEND=noninteractive
apt=(apt-get -o DPkg::Lock::Timeout=600)
mkdir -p /usr/share/man/man1  # slim images drop it, and the JRE's post-install step needs it
if ! "${apt[@]}" install -y -q --no-install-recommends openjdk-17-jre-headless >"$log" 2>&1 </dev/null; then
  "${apt[@]}" update -q >>"$log" 2>&1 </dev/null
  "${apt[@]}" install -y -q --no-install-recommends openjdk-17-jre-headless >>"$log" 2>&1 </dev/null
fi
if command -v java >/dev/null 2>&1; then
  exit 0
fi
echo "install-java: apt-get could not install openjdk-17-jre-headless (see $log)" >&2
exit 77
