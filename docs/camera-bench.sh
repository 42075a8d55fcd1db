#!/usr/bin/env bash
# The figures of chapter 12 (docs/12-datagrams.md): a 1 MiB photo sent by
# 07_camera_client through a lossy UDP proxy at 0 %, 5 % and 20 % loss, and
# the same photo over chapter 5's file server (TCP) for comparison.
#
#   docs/camera-bench.sh               # 5 repetitions of each row
#   REPS=9 docs/camera-bench.sh
#
# The proxy is the one tests/ex07_camera.rs uses, written in Python here so
# that the script needs nothing else: it drops the given share of the
# datagrams in each direction (chunks one way, ACKs and DONE the other), from
# a seed, so every repetition meets a different pattern of loss. It adds a
# little delay of its own, the same for every row.
#
# Each row is the median of REPS runs: the time the client process took
# from start to exit (the same clock for the file client), and how
# many datagrams it sent per chunk (HELLO and every resend included; 1.00
# means nothing was resent). Needs: cargo, python3. Everything listens on
# 127.0.0.1 only and is stopped when the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-5}
TARGET=${CARGO_TARGET_DIR:-target}
BIN="$TARGET/release/examples"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/netlessons-camera-bench.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { printf '%s\n' "$*" >&2; }
median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

say "== machine: $(nproc) cores, $(uname -r), $(rustc --version)"
say "== building (release)"
cargo build --release --quiet --example 07_camera_server --example 07_camera_client \
  --example 03_file_server --example 03_file_client

SECRET=camera-bench-secret
printf 'bench-cam:%s\n' "$SECRET" >"$WORK/cameras.txt"
printf 'learner:%s\n' "$SECRET" >"$WORK/users.txt"
head -c 1048576 /dev/urandom >"$WORK/photo.jpg"

# Starts "$@" in the background, waits for its `listening on` line, and
# sets ADDR to the address and LAST to the process id.
start() {
  local out="$WORK/out.$RANDOM"
  "$@" >"$out" 2>"$out.err" &
  LAST=$!
  PIDS+=("$LAST")
  for _ in $(seq 1 200); do
    if grep -q '^listening on ' "$out" 2>/dev/null; then
      ADDR=$(sed -n 's/^listening on //p' "$out" | head -1)
      return
    fi
    sleep 0.05
  done
  say "error: $* did not start: $(cat "$out.err")"
  exit 1
}

cat >"$WORK/proxy.py" <<'EOF'
import random, select, socket, sys
server_host, server_port = sys.argv[1].rsplit(":", 1)
loss, seed = float(sys.argv[2]) / 100, int(sys.argv[3])
rng = random.Random(seed)
front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
front.bind(("127.0.0.1", 0))
back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
back.connect((server_host, int(server_port)))
print("listening on 127.0.0.1:%d" % front.getsockname()[1], flush=True)
client = None
while True:
    ready, _, _ = select.select([front, back], [], [])
    for s in ready:
        if s is front:
            data, client = front.recvfrom(65536)
            if rng.random() >= loss:
                back.send(data)
        else:
            data = back.recv(65536)
            if client and rng.random() >= loss:
                front.sendto(data, client)
EOF

start "$BIN/07_camera_server" --addr 127.0.0.1:0 --store "$WORK/store" --users "$WORK/cameras.txt"
SERVER=$ADDR
say "camera server on $SERVER"

printf '| link | time (median of %s) | datagrams sent per chunk |\n|---|---|---|\n' "$REPS"
for loss in 0 5 20; do
  : >"$WORK/secs" && : >"$WORK/per"
  for rep in $(seq 1 "$REPS"); do
    start python3 "$WORK/proxy.py" "$SERVER" "$loss" "$rep"
    PROXY=$ADDR
    t0=$(date +%s.%N)
    line=$(NETLESSONS_SECRET=$SECRET "$BIN/07_camera_client" --addr "$PROXY" \
      --camera bench-cam --plate BENCH --speed 1 "$WORK/photo.jpg")
    t1=$(date +%s.%N)
    kill "$LAST" 2>/dev/null || true
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }' >>"$WORK/secs"
    echo "$line" | sed -n 's/.*(\([0-9.]*\) per chunk).*/\1/p' >>"$WORK/per"
  done
  printf '| UDP, %s %% loss each way | %s s | %s |\n' "$loss" \
    "$(median <"$WORK/secs")" "$(median <"$WORK/per")"
done

start "$BIN/03_file_server" --addr 127.0.0.1:0 --root "$WORK/files" --users "$WORK/users.txt"
FILES=$ADDR
: >"$WORK/secs"
for rep in $(seq 1 "$REPS"); do
  t0=$(date +%s.%N)
  NETLESSONS_SECRET=$SECRET "$BIN/03_file_client" --addr "$FILES" --user learner \
    put "$WORK/photo.jpg" --as "photo$rep.jpg" >/dev/null
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }' >>"$WORK/secs"
done
printf '| TCP, the file server of chapter 5, no proxy | %s s | (TCP: no datagrams of ours) |\n' \
  "$(median <"$WORK/secs")"
