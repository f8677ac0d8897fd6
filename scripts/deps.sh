#!/bin/sh
# Install the Debian 12 packages vspcd needs to build and test, but only the
# ones that are missing, so a second run is a no-op.
set -eu

PKGS="build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
libevent-dev libssl-dev libsqlite3-dev libyaml-dev libbsd-dev libjansson-dev
python3 telnet procps iproute2 openssh-client openssh-server openssl"

missing=""
for p in $PKGS; do
	st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
	case "$st" in
	ii*) ;;
	*) missing="$missing $p" ;;
	esac
done
[ -z "$missing" ] && exit 0

echo "deps: installing:$missing"
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: must run as root to install packages" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q || true
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
