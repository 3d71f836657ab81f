#!/usr/bin/env bash
# System packages the test suite needs beyond Python: git (content repositories) and
# chromium (the theme's screenshot tests), h2load (nghttp2-client: an HTTP/2 client that hangs up
# mid-answer, tests/integration/test_origin_h2_disconnect.py). Installed with apt-get when missing.
set -euo pipefail
need=()
command -v git >/dev/null 2>&1 || need+=(git)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || {
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q "${need[@]}" >/dev/null
}
