#!/usr/bin/env bash
# check-orphans.sh: fail if a mariadbd started by ringtest outlived the tests.
# ringtest's servers run with a data directory under a "ringtest-" temp dir.
set -u
left=$(pgrep -af 'mariadbd|mysqld' | grep -- 'ringtest-' || true)
if [ -n "$left" ]; then
	echo "ringtest servers left running after the tests:" >&2
	echo "$left" >&2
	exit 1
fi
echo "no ringtest server left running"
