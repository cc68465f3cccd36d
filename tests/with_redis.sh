#!/bin/sh
# tests/with_redis.sh COMMAND [ARG...]: runs COMMAND with MPT_TEST_REDIS_URL
# pointing at a redis-server of its own, started on a free loopback port
# (no persistence) and stopped afterwards, whatever COMMAND does. Exits
# with COMMAND's status. `make check-c-redis` runs the C tests that take a
# store as a parameter (tests/c/lifecycle.c, tests/c/cancel.c) so.
set -u
command -v redis-server >/dev/null 2>&1 || {
    echo "with_redis: redis-server is missing (Debian package redis-server; make deps installs it)" >&2
    exit 2
}
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --loglevel warning >/dev/null 2>&1 &
server=$!
trap 'kill -9 $server 2>/dev/null; wait $server 2>/dev/null' EXIT INT TERM
tries=0
until [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; do
    tries=$((tries + 1))
    if [ $tries -gt 500 ]; then
        echo "with_redis: redis-server did not answer on port $port within 10 s" >&2
        exit 2
    fi
    sleep 0.02
done
MPT_TEST_REDIS_URL="redis://127.0.0.1:$port/0" "$@"
