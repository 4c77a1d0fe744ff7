#!/usr/bin/env bash
# check-docker-leftovers.sh: fail if ringtest's Docker backend left a
# container, network or volume behind. Everything it creates carries the
# label dbrouter.ringtest; leftovers (from a test binary killed before its
# cleanup ran, say) are listed, removed, and make this script fail.
set -u
label=dbrouter.ringtest
containers=$(docker ps -aq --filter "label=$label")
networks=$(docker network ls -q --filter "label=$label")
volumes=$(docker volume ls -q --filter "label=$label")
if [ -z "$containers$networks$volumes" ]; then
	echo "no ringtest container, network or volume left (docker ps -a, network ls, volume ls)"
	exit 0
fi
echo "ringtest Docker objects left after the tests:" >&2
[ -n "$containers" ] && docker ps -a --filter "label=$label" >&2
[ -n "$networks" ] && docker network ls --filter "label=$label" >&2
[ -n "$volumes" ] && docker volume ls --filter "label=$label" >&2
echo "removing them" >&2
[ -n "$containers" ] && docker rm -f -v $containers >/dev/null
[ -n "$networks" ] && docker network rm $networks >/dev/null
[ -n "$volumes" ] && docker volume rm -f $volumes >/dev/null
exit 1
