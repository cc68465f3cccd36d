#!/bin/sh
# A parallel download loop that keeps to one rate: 8 downloads at a time
# (xargs -P 8), and at most 5 requests per second to the site however many
# run at once. It starts a local web server of its own to crawl.
#
#   sh cli/examples/crawl.sh            (mpt on PATH, after make install)
#   MPT=target/release/mpt sh cli/examples/crawl.sh
set -eu
mpt=${MPT:-mpt}
name=${NAME:-crawl}
work=$(mktemp -d)
mkdir "$work/site" "$work/got"
for i in $(seq 20); do echo "page $i" >"$work/site/$i.html"; done

# README begin
python3 -u -m http.server --bind 127.0.0.1 --directory "$work/site" 0 >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server; "$mpt" rm "$name"; rm -rf "$work"' EXIT
until port=$(sed -n 's/.* port \([0-9]*\) .*/\1/p' "$work/server.log") && [ -n "$port" ]; do
    sleep 0.1
done

# One rate for every download: 5 per second, evenly spaced (hardcap one).
"$mpt" create "$name" 5/s --hardcap one --start
seq 20 | xargs -P 8 -I{} "$mpt" run "$name" -- \
    curl -fsS -o "$work/got/{}.html" "http://127.0.0.1:$port/{}.html"
"$mpt" stop "$name"
# README end
echo "downloaded $(ls "$work/got" | wc -l) pages"
