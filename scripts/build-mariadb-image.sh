#!/usr/bin/env bash
# build-mariadb-image.sh: wrapper kept for existing callers. The script
# itself lives in ringtest/build-mariadb-image.sh, which package ringtest
# embeds; see that file for what it does and its arguments.
exec bash "$(dirname "$0")/../ringtest/build-mariadb-image.sh" "$@"
