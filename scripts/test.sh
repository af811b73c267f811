#!/usr/bin/env bash
# The test command (README, `.ci/run`): installs the Debian packages the suites use when they are
# missing, then runs every suite of the workspace.
#
# CONFLUX_FULL_TESTS=1 switches to the heavy sizes (hundreds of crash cycles and power-loss seeds,
# a thousand property-test cases). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the suites start or call. The engine suites need none; the node's etcd
# compatibility tests add etcd-server and etcd-client, the instruction-count gate adds valgrind.
DEB_PACKAGES=(etcd-server etcd-client)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing Debian packages: ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

cargo test --workspace --locked "$@"
