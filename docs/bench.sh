#!/usr/bin/env bash
# Side-by-side measurements for chapter 8 (docs/08-measuring.md).
#
# Runs each workload against the baselines and against netlessons in the same
# run, interleaved, REPS times, and prints the median of each as a Markdown
# table with the ratios. Only ratios mean anything: absolute figures move with
# the machine, its load, and the weather.
#
#   docs/bench.sh                      # everything, 5 repetitions
#   REPS=3 docs/bench.sh echo c10k     # some workloads only
#   PER_THREAD=8 docs/bench.sh echo    # the echo client drives 8 connections a thread
#   REPS=5 docs/bench.sh web           # the web server against nginx and Python
#
# Workloads: echo stream c10k hash file mail web (default: all of them).
# Needs: cargo, gcc, python3, sha256sum. `mail` also needs aiosmtpd
# (`pip install aiosmtpd`); without it the mail rows show ours alone.
# `web` also needs nginx (`apt-get install nginx`); without it the nginx
# column says so. WEB_SECS (default 5) is the length of each small-file run;
# PY_PROTOCOL=HTTP/1.1 makes Python's server keep connections alive (its
# default, HTTP/1.0, closes each one after one response).
#
# Everything listens on 127.0.0.1 only, lives in a temporary folder, and is
# stopped when the script ends (also on Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-5}
PER_THREAD=${PER_THREAD:-1}
WHAT=${*:-echo stream c10k hash file mail web}
WEB_SECS=${WEB_SECS:-5}
PY_PROTOCOL=${PY_PROTOCOL:-HTTP/1.0}
TARGET=${CARGO_TARGET_DIR:-target}
BIN="$TARGET/release/examples"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/netlessons-bench.XXXXXX")
PIDS=()

cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------- setup
say "== machine"
say "cores: $(nproc)   kernel: $(uname -r)   $(rustc --version)"
free -h | sed -n 2p | awk '{print "memory: " $2 " total, " $7 " available"}' >&2

# c10k holds 10,000 sockets in the load tester and 10,000 in the server.
# Raise the soft limit up to the hard one (no root needed for that); the
# servers started below inherit it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10100 ]; then
  say "warning: ulimit -n is $(ulimit -n); c10k needs about 10,100 (ask root to raise the hard limit)"
fi

say "== building (release)"
cargo build --release --quiet --examples

# The baselines: a minimal C thread-per-connection echo server (the floor the
# kernel sets), the course-style Python one, and a Python smtplib load. They
# live in docs/bench/ so that chapter 8 can build and run them by hand too;
# BASELINES=DIR uses the files in DIR instead.
cp "${BASELINES:-docs/bench}"/c_echo_server.c "${BASELINES:-docs/bench}"/py_echo_server.py \
  "${BASELINES:-docs/bench}"/smtp_bench.py "$WORK"/
gcc -O2 -o "$WORK/c_echo_server" "$WORK/c_echo_server.c" -lpthread

# ---------------------------------------------------------------- helpers
# A free loopback port (for the baselines, which take a port number).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until something accepts connections on 127.0.0.1:$1.
wait_port() {
  for _ in $(seq 200); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2).close()" 2>/dev/null && return 0
    sleep 0.05
  done
  say "nothing listening on port $1"; return 1
}

# start NAME: starts an echo server, sets PORT and PID.
start() {
  PORT=$(free_port)
  case $1 in
    c) "$WORK/c_echo_server" "$PORT" & ;;
    py) python3 "$WORK/py_echo_server.py" "$PORT" & ;;
    ours) "$BIN/01_echo_server" --addr "127.0.0.1:$PORT" >/dev/null & ;;
  esac
  PID=$!
  PIDS+=("$PID")
  wait_port "$PORT"
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# field KEY LINE: the value of KEY=... in a report line.
field() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }

# median of the numbers on stdin.
median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b+0 == 0) print "n/a"; else printf "%.2f", a/b }'; }

ROWS=()
row() { ROWS+=("$*"); printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------- echo
if [[ " $WHAT " == *" echo "* ]]; then
  say "== echo: 64-byte round trips, $REPS repetitions, order rotated, $PER_THREAD connection(s) per client thread"
  declare -A PORTS SPIDS
  for who in c ours py; do start "$who"; PORTS[$who]=$PORT; SPIDS[$who]=$PID; done
  for conns in 32 256; do
    rounds=$((conns == 32 ? 2000 : 400))
    : >"$WORK/echo-$conns"
    for rep in $(seq "$REPS"); do
      order=(c ours py); [ $((rep % 3)) = 1 ] && order=(ours py c); [ $((rep % 3)) = 2 ] && order=(py c ours)
      for who in "${order[@]}"; do
        line=$("$BIN/05_load_tester" echo --addr "127.0.0.1:${PORTS[$who]}" --conns "$conns" --rounds "$rounds" --warmup 50 --per-thread "$PER_THREAD" --server-pid "${SPIDS[$who]}")
        say "  $who: $line"
        cpu=$(field server_cpu_us_per_req "$line") # empty if /proc could not be read
        echo "$who $(field req_per_s "$line") $(field p99_ms "$line") ${cpu:-nan} $(field errors "$line")" >>"$WORK/echo-$conns"
      done
    done
    med() { awk -v w="$1" -v c="$2" '$1==w {print $c}' "$WORK/echo-$conns" | median; }
    c_rps=$(med c 2); o_rps=$(med ours 2); p_rps=$(med py 2)
    c_p99=$(med c 3); o_p99=$(med ours 3); p_p99=$(med py 3)
    label="echo $conns conns"; [ "$PER_THREAD" != 1 ] && label="$label ($PER_THREAD per client thread)"
    row "| $label, req/s | $o_rps | C $c_rps, Python $p_rps | $(ratio "$o_rps" "$c_rps")x C, $(ratio "$o_rps" "$p_rps")x Python |"
    row "| $label, p99 ms | $o_p99 | C $c_p99, Python $p_p99 | $(ratio "$o_p99" "$c_p99")x C |"
    # The servers' own CPU time per request (the load tester reads it from
    # /proc): what each costs, whatever share of the cores the client took.
    c_cpu=$(med c 4); o_cpu=$(med ours 4); p_cpu=$(med py 4)
    row "| $label, server CPU us/request | $o_cpu | C $c_cpu, Python $p_cpu | $(ratio "$o_cpu" "$c_cpu")x C's, $(ratio "$o_cpu" "$p_cpu")x Python's |"
  done
  for pid in "${PIDS[@]}"; do stop "$pid"; done
fi

# ---------------------------------------------------------------- stream
if [[ " $WHAT " == *" stream "* ]]; then
  say "== stream: 1 GiB through one connection"
  declare -A PORTS
  for who in c ours; do start "$who"; PORTS[$who]=$PORT; done
  : >"$WORK/stream"
  for rep in $(seq "$REPS"); do
    for who in c ours; do
      line=$("$BIN/05_load_tester" stream --addr "127.0.0.1:${PORTS[$who]}" --size 1G)
      say "  $who: $line"
      echo "$who $(field mb_per_s "$line")" >>"$WORK/stream"
    done
  done
  c_mb=$(awk '$1=="c"{print $2}' "$WORK/stream" | median)
  o_mb=$(awk '$1=="ours"{print $2}' "$WORK/stream" | median)
  row "| echo stream 1 GiB, MB/s | $o_mb | C $c_mb | $(ratio "$o_mb" "$c_mb")x C |"
  for pid in "${PIDS[@]}"; do stop "$pid"; done
fi

# ---------------------------------------------------------------- c10k
if [[ " $WHAT " == *" c10k "* ]]; then
  say "== c10k: 10,000 connections, 8 opening threads, 5 s hold; a fresh server each run"
  : >"$WORK/c10k"
  for rep in $(seq "$REPS"); do
    for who in c ours; do
      start "$who"
      line=$("$BIN/05_load_tester" c10k --addr "127.0.0.1:$PORT" --server-pid "$PID" --hold 5) || true
      say "  $who: $line"
      echo "$who $(field storm_secs "$line") $(field server_hwm_mib "$line") $(field hold_rss_mib "$line") $(field errors "$line")" >>"$WORK/c10k"
      stop "$PID"
      sleep 2 # let the 10,000 sockets finish closing before the next run
    done
  done
  med() { awk -v w="$1" -v c="$2" '$1==w {print $c}' "$WORK/c10k" | median; }
  row "| c10k storm, s | $(med ours 2) | C $(med c 2) | $(ratio "$(med ours 2)" "$(med c 2)")x C |"
  row "| c10k server VmHWM, MiB | $(med ours 3) | C $(med c 3) | $(ratio "$(med ours 3)" "$(med c 3)")x C |"
  row "| c10k server VmRSS in the hold, MiB | $(med ours 4) | C $(med c 4) | $(ratio "$(med ours 4)" "$(med c 4)")x C |"
fi

# ---------------------------------------------------------------- hash and file
BIG="$WORK/root/big.bin"
make_big() {
  if [ ! -f "$BIG" ]; then
    mkdir -p "$WORK/root"
    head -c 1073741824 /dev/urandom >"$BIG"
  fi
}

now() { date +%s.%N; }

if [[ " $WHAT " == *" hash "* ]]; then
  say "== SHA-256 of a 1 GiB file (from the page cache): sha256sum against ours"
  make_big
  sha256sum "$BIG" >/dev/null # warm the page cache
  : >"$WORK/hash"
  for rep in $(seq "$REPS"); do
    t0=$(now); sha256sum "$BIG" >/dev/null; t1=$(now)
    echo "sha256sum $(awk -v t0="$t0" -v t1="$t1" 'BEGIN {printf "%.1f", 1073.741824/(t1-t0)}')" >>"$WORK/hash"
    line=$("$BIN/05_load_tester" hash --file "$BIG")
    say "  ours: $line"
    echo "ours $(field mb_per_s "$line")" >>"$WORK/hash"
  done
  s_mb=$(awk '$1=="sha256sum"{print $2}' "$WORK/hash" | median)
  o_mb=$(awk '$1=="ours"{print $2}' "$WORK/hash" | median)
  say "  sha256sum medians: $s_mb MB/s"
  row "| SHA-256 1 GiB, MB/s | $o_mb | sha256sum $s_mb | $(ratio "$o_mb" "$s_mb")x sha256sum |"
fi

if [[ " $WHAT " == *" file "* ]]; then
  say "== file GET of 1 GiB (verified), against our own hashing speed"
  make_big
  printf 'bench:bench-secret\n' >"$WORK/users"
  PORT=$(free_port)
  "$BIN/03_file_server" --addr "127.0.0.1:$PORT" --root "$WORK/root" --users "$WORK/users" >/dev/null 2>&1 &
  PID=$!; PIDS+=("$PID"); wait_port "$PORT"
  export NETLESSONS_SECRET=bench-secret
  # The first GET makes the server hash the file for the digest it sends
  # first (it keeps it for later GETs): hash, then transfer, one after the
  # other. Shown apart, then the warm GETs are measured.
  line=$("$BIN/05_load_tester" file --addr "127.0.0.1:$PORT" --user bench --get big.bin --rounds 1)
  say "  first get: $line"
  cold_mb=$(field mb_per_s "$line")
  : >"$WORK/file"
  for rep in $(seq "$REPS"); do
    line=$("$BIN/05_load_tester" file --addr "127.0.0.1:$PORT" --user bench --get big.bin --rounds 1)
    say "  get: $line"
    echo "get $(field mb_per_s "$line")" >>"$WORK/file"
    # The ceiling for a verified download: the time spent hashing alone.
    line=$("$BIN/05_load_tester" hash --file "$BIG")
    echo "hash $(field hash_only_mb_per_s "$line")" >>"$WORK/file"
  done
  g_mb=$(awk '$1=="get"{print $2}' "$WORK/file" | median)
  h_mb=$(awk '$1=="hash"{print $2}' "$WORK/file" | median)
  row "| file GET 1 GiB verified, MB/s | $g_mb | hashing alone $h_mb | $(ratio "$g_mb" "$h_mb")x hash |"
  row "| file GET 1 GiB, first (server hashes first), MB/s | $cold_mb | hashing alone $h_mb | $(ratio "$cold_mb" "$h_mb")x hash (one run) |"
  stop "$PID"
fi

# ---------------------------------------------------------------- mail
if [[ " $WHAT " == *" mail "* ]]; then
  say "== mail: smtp_bench.py, every message synced before its 250"
  # How long a sync takes on this disk. Each message costs two before its
  # 250: the new file's bytes, then the folder it was renamed into. On one
  # connection nothing can be shared, so 1 / (two syncs) bounds messages/s.
  sync_ms=$(python3 - "$WORK" <<'EOF'
import os, sys, time, statistics
d = os.path.join(sys.argv[1], "sync-probe")
os.makedirs(os.path.join(d, "new"))
files, folders = [], []
for i in range(100):
    tmp = os.path.join(d, f"t{i}")
    with open(tmp, "wb") as f:
        f.write(b"x" * 1200)
        t = time.perf_counter(); os.fsync(f.fileno()); files.append(time.perf_counter() - t)
    os.rename(tmp, os.path.join(d, "new", f"m{i}"))
    fd = os.open(os.path.join(d, "new"), os.O_RDONLY)
    t = time.perf_counter(); os.fsync(fd); folders.append(time.perf_counter() - t)
    os.close(fd)
print(f"{statistics.median(files)*1000:.2f} {statistics.median(folders)*1000:.2f}")
EOF
)
  file_ms=${sync_ms% *}; dir_ms=${sync_ms#* }
  say "  sync latency (median of 100): new file $file_ms ms, folder $dir_ms ms"
  row "| sync latency, ms (median of 100): new file + its folder | $file_ms + $dir_ms | | one connection: at most $(awk -v a="$file_ms" -v b="$dir_ms" 'BEGIN {printf "%.0f", 1000/(a+b)}') msgs/s |"
  have_aiosmtpd=no
  python3 -c 'import aiosmtpd' 2>/dev/null && have_aiosmtpd=yes
  for load in "1 400" "8 100"; do
    : >"$WORK/mail"
    for rep in $(seq "$REPS"); do
      if [ $have_aiosmtpd = yes ]; then
        PORT=$(free_port); mkdir -p "$WORK/mbox-$rep"
        python3 -m aiosmtpd -n -l "127.0.0.1:$PORT" -c aiosmtpd.handlers.Mailbox "$WORK/mbox-$rep/box" 2>/dev/null &
        PID=$!; PIDS+=("$PID"); wait_port "$PORT"
        line=$(python3 "$WORK/smtp_bench.py" 127.0.0.1 "$PORT" $load)
        say "  aiosmtpd $load: $line"
        echo "aiosmtpd $(field msgs_per_s "$line")" >>"$WORK/mail"
        stop "$PID"
      fi
      rm -rf "$WORK/spool"
      "$BIN/04_mail_relay" --smtp-addr 127.0.0.1:0 --pop3-addr 127.0.0.1:0 --spool "$WORK/spool" \
        >"$WORK/relay.out" 2>/dev/null &
      PID=$!; PIDS+=("$PID")
      for _ in $(seq 200); do grep -q '(smtp)' "$WORK/relay.out" 2>/dev/null && break; sleep 0.05; done
      port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\) (smtp)$/\1/p' "$WORK/relay.out")
      line=$(python3 "$WORK/smtp_bench.py" 127.0.0.1 "$port" $load)
      say "  ours $load: $line"
      echo "ours $(field msgs_per_s "$line")" >>"$WORK/mail"
      stop "$PID"
    done
    o=$(awk '$1=="ours"{print $2}' "$WORK/mail" | median)
    if [ $have_aiosmtpd = yes ]; then
      a=$(awk '$1=="aiosmtpd"{print $2}' "$WORK/mail" | median)
      row "| mail smtp_bench $load, msgs/s | $o | aiosmtpd $a (no sync) | $(ratio "$o" "$a")x aiosmtpd |"
    else
      row "| mail smtp_bench $load, msgs/s | $o | aiosmtpd not installed | |"
    fi
  done
fi

# ---------------------------------------------------------------- web
if [[ " $WHAT " == *" web "* ]]; then
  say "== web: a 1 KiB file at 32 keep-alive connections, and a 1 GiB download"
  say "   06_web_server --quiet, nginx, python3 -m http.server ($PY_PROTOCOL); $REPS repetitions, order rotated"
  WEBROOT="$WORK/webroot"
  mkdir -p "$WEBROOT"
  head -c 1024 /dev/urandom >"$WEBROOT/1k.bin"
  truncate -s 1G "$WEBROOT/big.bin" # sparse: no disk needed, read as zeros
  # nginx started as root serves from workers running as `nobody`: they must
  # be able to read the files (mktemp made $WORK private).
  chmod a+rx "$WORK" "$WEBROOT"
  chmod a+r "$WEBROOT"/*

  WEB_WHO=(ours)
  if command -v nginx >/dev/null; then
    WEB_WHO+=(nginx)
  else
    say "   skipped nginx: it is not installed (apt-get install nginx); its column says so"
  fi
  if python3 -c 'import http.server' 2>/dev/null; then
    WEB_WHO+=(py)
  else
    say "   skipped Python's http.server: python3 cannot import it"
  fi

  # start_web NAME: starts a web server on a free port, sets PORT and PID.
  start_web() {
    PORT=$(free_port)
    case $1 in
      ours) "$BIN/06_web_server" --addr "127.0.0.1:$PORT" --root "$WEBROOT" --quiet >/dev/null 2>&1 & ;;
      py) python3 -m http.server --bind 127.0.0.1 --directory "$WEBROOT" --protocol "$PY_PROTOCOL" "$PORT" >/dev/null 2>&1 & ;;
      nginx)
        # The configuration the comparison needs and nothing else: in the
        # foreground, one worker per core, no access log (like our --quiet),
        # sendfile; every path it writes is under $WORK.
        mkdir -p "$WORK/nginx"
        cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events {}
http {
    access_log off;
    sendfile on;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$PORT;
        root $WEBROOT;
    }
}
EOF
        nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
        ;;
    esac
    PID=$!
    PIDS+=("$PID")
    wait_port "$PORT"
  }

  declare -A WPORTS WPIDS
  for who in "${WEB_WHO[@]}"; do start_web "$who"; WPORTS[$who]=$PORT; WPIDS[$who]=$PID; done
  : >"$WORK/web-small"
  : >"$WORK/web-big"
  for rep in $(seq "$REPS"); do
    # Rotate the order, so that no server always runs first (or last).
    order=("${WEB_WHO[@]}")
    for _ in $(seq $((rep % ${#order[@]}))); do order=("${order[@]:1}" "${order[0]}"); done
    for who in "${order[@]}"; do
      line=$("$BIN/05_load_tester" http --addr "127.0.0.1:${WPORTS[$who]}" --path /1k.bin --conns 32 \
        --duration "$WEB_SECS" --server-pid "${WPIDS[$who]}") || say "  $who: errors (exit status $?)"
      say "  $who 1k: $line"
      cpu=$(field server_cpu_us_per_req "$line")
      echo "$who $(field req_per_s "$line") ${cpu:-nan} $(field p99_ms "$line") $(field errors "$line")" >>"$WORK/web-small"
    done
    for who in "${order[@]}"; do
      line=$("$BIN/05_load_tester" http --addr "127.0.0.1:${WPORTS[$who]}" --path /big.bin --conns 1 \
        --rounds 3 --warmup 0 --server-pid "${WPIDS[$who]}") || say "  $who: errors (exit status $?)"
      say "  $who 1G: $line"
      echo "$who $(field mb_per_s "$line") $(field server_hwm_mib "$line")" >>"$WORK/web-big"
    done
  done
  # wmed FILE NAME COLUMN: the median, or nothing if NAME was not measured.
  wmed() { awk -v w="$2" -v c="$3" '$1==w && $c!="" && $c!="nan" {print $c}' "$WORK/$1" | median | grep -v '^nan$' || true; }
  # versus OURS THEIRS NAME: "1.23x NAME", or why there is no ratio.
  versus() { if [ -z "$2" ]; then echo "no $3"; else echo "$(ratio "$1" "$2")x $3"; fi; }
  shown() { if [ -z "$1" ]; then echo "not measured"; else echo "$1"; fi; }
  o=$(wmed web-small ours 2); n=$(wmed web-small nginx 2); p=$(wmed web-small py 2)
  row "| web 1 KiB, 32 keep-alive conns, req/s | $o | nginx $(shown "$n"), Python $(shown "$p") | $(versus "$o" "$n" nginx), $(versus "$o" "$p" Python) |"
  o=$(wmed web-small ours 3); n=$(wmed web-small nginx 3); p=$(wmed web-small py 3)
  row "| web 1 KiB, server CPU us/request | $o | nginx $(shown "$n"), Python $(shown "$p") | $(versus "$o" "$n" "nginx's"), $(versus "$o" "$p" "Python's") |"
  o=$(wmed web-small ours 4); n=$(wmed web-small nginx 4); p=$(wmed web-small py 4)
  row "| web 1 KiB, p99 ms | $o | nginx $(shown "$n"), Python $(shown "$p") | $(versus "$o" "$n" nginx) |"
  o=$(wmed web-big ours 2); n=$(wmed web-big nginx 2); p=$(wmed web-big py 2)
  row "| web 1 GiB download, MB/s | $o | nginx $(shown "$n"), Python $(shown "$p") | $(versus "$o" "$n" nginx), $(versus "$o" "$p" Python) |"
  o=$(wmed web-big ours 3); n=$(wmed web-big nginx 3); p=$(wmed web-big py 3)
  row "| web 1 GiB download, server VmHWM MiB | $o | nginx $(shown "$n")$([ -n "$n" ] && echo " (all its processes)"), Python $(shown "$p") | |"
  for who in "${WEB_WHO[@]}"; do stop "${WPIDS[$who]}"; done
fi

# ---------------------------------------------------------------- table
echo
echo "Medians of $REPS runs; $(nproc) cores, $(uname -r), $(rustc --version | cut -d' ' -f1-2)."
echo
echo "| workload | netlessons | baseline | ratio |"
echo "|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
