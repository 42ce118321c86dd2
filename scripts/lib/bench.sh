# Shared by the bench and soak scripts (sourced, not run): a temp dir and the
# child processes started in it, removed and stopped on exit, and small probes
# of a running daemon. Everything talks to 127.0.0.1 only.

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A port nothing listens on right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# utime + stime of process $1, in seconds.
cpu_seconds() { awk '{ printf "%.2f\n", ($14 + $15) / 100 }' "/proc/$1/stat"; }
# Peak resident set of process $1, in MiB.
peak_rss_mib() { awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
# Sum of metric $2's series whose line contains $3 (a label matcher), from admin address $1.
metric() { curl -fsS "http://$1/metrics" | awk -v name="$2" -v want="$3" 'index($0, name) == 1 && index($0, want) { s += $NF } END { printf "%.0f\n", s + 0 }'; }
# The address a tsrelay-loadgen null receiver writing to file $1 listens on, once it says so
# (waits up to 10 s); on failure prints the file and returns 1.
listening_address() {
  for _ in $(seq 1 100); do grep -q '^listening on' "$1" && break; sleep 0.1; done
  local addr
  addr=$(awk '/^listening on/ { print $3 }' "$1")
  [ -n "$addr" ] || { cat "$1" >&2; echo "$(basename "$0"): the null receiver did not start" >&2; return 1; }
  echo "$addr"
}
# Waits up to 20 s until URL $1 answers with a 2xx.
wait_http() {
  for _ in $(seq 1 200); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "$(basename "$0"): nothing answers at $1" >&2
  return 1
}
