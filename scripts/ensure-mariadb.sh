#!/usr/bin/env bash
# ensure-mariadb.sh: make sure a MariaDB (or MySQL) server binary is installed,
# installing Debian's mariadb-server package when it is missing and we are root.
# The tests start their own servers on free loopback ports with their own data
# directories; they never use a system-wide server.
set -euo pipefail

for b in mariadbd mysqld; do
	if command -v "$b" >/dev/null 2>&1; then exit 0; fi
	if [ -x "/usr/sbin/$b" ]; then exit 0; fi
done

if [ "$(id -u)" != 0 ]; then
	echo "No MariaDB server binary (mariadbd or mysqld) found on PATH or in /usr/sbin." >&2
	echo "Install it as root, then run this again:" >&2
	echo "    sudo apt-get install -y mariadb-server" >&2
	exit 1
fi

echo "Installing mariadb-server from Debian's packages ..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq mariadb-server >/tmp/dbrouter-apt.log 2>&1 || {
	tail -30 /tmp/dbrouter-apt.log >&2
	echo "apt-get install mariadb-server failed (full log: /tmp/dbrouter-apt.log)" >&2
	exit 1
}
# Debian starts the packaged server; the tests do not need it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mariadb 2>/dev/null; then
	systemctl stop mariadb || true
fi
echo "Installed: $(/usr/sbin/mariadbd --version)"
