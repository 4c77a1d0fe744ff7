#!/usr/bin/env bash
# check-docker-leftovers.sh: fail if ringtest's Docker backend left a
# container, network or volume behind. Everything it creates carries the
# label dbrouter.ringtest; leftovers (from a test binary killed before its
# cleanup ran, say) are listed, removed, and make this script fail.
#
# With --before (run by make test-docker before its tests) it removes what
# an earlier, interrupted run left, says so, and does not fail: those are
# not this run's leftovers.
set -u
label=dbrouter.ringtest
before=false
[ "${1:-}" = "--before" ] && before=true
containers=$(docker ps -aq --filter "label=$label")
networks=$(docker network ls -q --filter "label=$label")
volumes=$(docker volume ls -q --filter "label=$label")
if [ -z "$containers$networks$volumes" ]; then
	$before || echo "no ringtest container, network or volume left (docker ps -a, network ls, volume ls)"
	exit 0
fi
if $before; then
	echo "ringtest Docker objects left by an earlier run, removed before the tests:" >&2
else
	echo "ringtest Docker objects left after the tests:" >&2
fi
[ -n "$containers" ] && docker ps -a --filter "label=$label" >&2
[ -n "$networks" ] && docker network ls --filter "label=$label" >&2
[ -n "$volumes" ] && docker volume ls --filter "label=$label" >&2
echo "removing them" >&2
[ -n "$containers" ] && docker rm -f -v $containers >/dev/null
# A network whose containers were just removed can still report active
# endpoints for a moment.
for n in $networks; do
	for try in 1 2 3 4 5 6 7 8 9 10; do
		docker network rm "$n" >/dev/null 2>&1 && break
		sleep 1
	done
done
[ -n "$volumes" ] && docker volume rm -f $volumes >/dev/null
$before && exit 0
exit 1
