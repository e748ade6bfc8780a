#!/usr/bin/env bash
# Installs the system packages the test suite runs against, when missing (Debian; needs root).
set -euo pipefail
need=()
# Each entry: command that must exist, then the Debian package that provides it.
for pair in "redis-server:redis-server" "redis-cli:redis-tools" "chromium:chromium" "promtool:prometheus" "prometheus:prometheus" \
            "systemd-analyze:systemd"; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
# Libraries: the soname that must be found, then its package (the server runs on jemalloc where installed).
for pair in "libjemalloc.so.2:libjemalloc2"; do
  lib=${pair%%:*}; pkg=${pair#*:}
  ldconfig -p 2>/dev/null | grep -q "$lib" || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${need[*]} (run as root or: sudo apt-get install ${need[*]})" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
