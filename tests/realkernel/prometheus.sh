#!/usr/bin/env bash
# Real Prometheus, node_exporter and promtool against synq's exposition of a real guest's dump (issue 9).
#
#   tests/realkernel/prometheus.sh OUTDIR DUMP
#
# OUTDIR is a dump.sh result directory (target/realkernel/dump-ID: results/ holds the guest's ground truth),
# DUMP one of its dumps. On the host:
#   1. synq serve --core DUMP (as root: it drops to nobody after the open); Debian's prometheus scrapes it
#      every second; the test asks Prometheus's HTTP API for synq_syn_queue and synq_accept_queue and compares
#      them, per listener, with the guest's /proc (check_prometheus.py); /proc/PID/status of synq serve must
#      show CapEff 0 and uid 65534.
#   2. synq --core DUMP --textfile DIR/synq.prom; Debian's prometheus-node-exporter (textfile collector only)
#      must show the same synq_* series, with no textfile scrape error.
#   3. promtool check metrics accepts the exposition.
# Env: SYNQ_BIN (default target/release/synq). Ports: 19813 (synq), 19090 (prometheus), 19100 (node_exporter).
set -euo pipefail

# shellcheck source=tests/realkernel/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

out=${1:?OUTDIR}
dump=${2:?DUMP}
synq_bin=${SYNQ_BIN:-target/release/synq}
[[ $synq_bin == /* ]] || synq_bin=$REPO_ROOT/$synq_bin
for t in prometheus prometheus-node-exporter promtool curl; do
  command -v "$t" >/dev/null || { echo "prometheus: FAIL: $t missing (tests/realkernel/setup-host.sh installs it)"; exit 1; }
done

p=$out/prometheus
rm -rf "$p"
mkdir -p "$p/tsdb" "$p/textfile"
pids=()
cleanup_prom() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup_prom EXIT

# Waits (up to $2 seconds) until the command $1 succeeds.
wait_for() {
  local i=0
  while ! eval "$1" >/dev/null 2>&1; do
    i=$((i + 1))
    [[ $i -lt $(($2 * 5)) ]] || return 1
    sleep 0.2
  done
}

fail=0

# 1. synq serve, scraped by a real Prometheus.
"$synq_bin" serve --core "$dump" --listen 127.0.0.1:19813 --min-interval 1 >"$p/serve.out" 2>"$p/serve.err" &
serve_pid=$!
pids+=("$serve_pid")
if ! wait_for "grep -q 'serving http://' '$p/serve.err'" 120; then
  echo "prometheus: FAIL: synq serve did not start: $(tr '\n' ' ' <"$p/serve.err")"
  exit 1
fi
grep -E '^(Uid|Gid|CapEff|CapPrm|NoNewPrivs|Seccomp):' "/proc/$serve_pid/status" >"$p/serve-status"
curl -fsS http://127.0.0.1:19813/metrics >"$p/serve-metrics.txt"

cat >"$p/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: synq
    static_configs:
      - targets: ['127.0.0.1:19813']
EOF
promtool check config "$p/prometheus.yml" >"$p/promtool-config.txt" 2>&1 || {
  echo "prometheus: FAIL: promtool check config: $(cat "$p/promtool-config.txt")"
  exit 1
}
prometheus --config.file="$p/prometheus.yml" --storage.tsdb.path="$p/tsdb" \
  --web.listen-address=127.0.0.1:19090 >"$p/prometheus.log" 2>&1 &
pids+=("$!")
query() { curl -fsS --get --data-urlencode "query=$1" http://127.0.0.1:19090/api/v1/query; }
# Ready when Prometheus has scraped synq at least once (and found it up).
if ! wait_for "query 'up{job=\"synq\"} == 1' | grep -q '\"value\"'" 120; then
  echo "prometheus: FAIL: Prometheus never scraped synq serve up (log: $p/prometheus.log)"
  tail -n 5 "$p/prometheus.log"
  exit 1
fi
wait_for "query 'synq_syn_queue' | grep -q '\"value\"'" 30 || true
query 'synq_syn_queue' >"$p/api-syn_queue.json"
query 'synq_accept_queue' >"$p/api-accept_queue.json"
query 'synq_listener_sockets' >"$p/api-sockets.json"
query 'up{job="synq"}' >"$p/api-up.json"

# 2. The textfile, read by a real node_exporter.
"$synq_bin" --core "$dump" --textfile "$p/textfile/synq.prom" 2>"$p/textfile.err" || {
  echo "prometheus: FAIL: synq --textfile: $(cat "$p/textfile.err")"
  fail=1
}
prometheus-node-exporter --web.listen-address=127.0.0.1:19100 --collector.disable-defaults \
  --collector.textfile --collector.textfile.directory="$p/textfile" >"$p/node-exporter.log" 2>&1 &
pids+=("$!")
if wait_for "curl -fsS http://127.0.0.1:19100/metrics" 60; then
  curl -fsS http://127.0.0.1:19100/metrics >"$p/node-metrics.txt"
else
  echo "prometheus: FAIL: node_exporter did not answer (log: $p/node-exporter.log)"
  fail=1
fi

# 3. promtool's own parser and linter.
if ! promtool check metrics <"$p/textfile/synq.prom" >"$p/promtool-metrics.txt" 2>&1; then
  echo "prometheus: FAIL: promtool check metrics: $(head -n 5 "$p/promtool-metrics.txt")"
  fail=1
fi

kill "$serve_pid" 2>/dev/null || true
rc=0
wait "$serve_pid" || rc=$?
echo "$rc" >"$p/serve.rc"

python3 "$REALKERNEL_DIR/check_prometheus.py" "$out" "$p" || fail=1
exit $fail
