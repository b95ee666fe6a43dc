#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft) for dev, tests and CI -- no Docker, no tarball.
#
# Jars come from Maven Central via deploy/kafka/pom.xml; everything else
# (rendered config, data, logs, pid) lives under <cache>/kafka/ where
# <cache> is $EVI_CACHE_DIR or <repo>/.cache.
#
# Usage: deploy/kafka/kafka.sh {fetch|start|stop|restart|status|reset|tool|classpath|logs} [args]
#   fetch            download the jars (no-op if the cache matches pom.xml)
#   start            fetch if needed, format storage once, start broker, wait until it answers
#   stop             SIGTERM, wait up to 30 s, then SIGKILL (no-op if not running)
#   restart          stop + start (data kept)
#   status           exit 0 iff a broker answers on the port
#   reset            stop and delete the data dir (topics, offsets, cluster id)
#   tool NAME args   run a Kafka CLI tool (alias such as `topics`, or a class name)
#   classpath        print the java classpath
#   logs [N]         print the last N (default 50) lines of server.log
#
# Environment:
#   EVI_CACHE_DIR                 cache root (default <repo>/.cache)
#   EVI_KAFKA_HOST                listen/advertise address (default 127.0.0.1)
#   EVI_KAFKA_PORT                client port (default 9092)
#   EVI_KAFKA_CONTROLLER_PORT     KRaft controller port (default 9093)
#   EVI_KAFKA_HEAP_OPTS           broker heap (default -Xms256m -Xmx512m)
#   EVI_KAFKA_JVM_OPTS            extra broker JVM options
#   EVI_KAFKA_TOOL_OPTS           JVM options for CLI tools
#   EVI_KAFKA_START_TIMEOUT       seconds to wait for the broker (default 60)
#   EVI_KAFKA_STOP_TIMEOUT        seconds before SIGKILL (default 30)
#   JAVA_HOME / MVN               java and maven to use
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
CACHE_DIR="${EVI_CACHE_DIR:-$REPO_ROOT/.cache}"
KAFKA_HOME="$CACHE_DIR/kafka"
LIBS_DIR="$KAFKA_HOME/libs"
DATA_DIR="$KAFKA_HOME/data"
LOG_DIR="$KAFKA_HOME/logs"
PROPS_FILE="$KAFKA_HOME/server.properties"
PID_FILE="$KAFKA_HOME/kafka.pid"
LOCK_FILE="$KAFKA_HOME/.lock"
STAMP_FILE="$LIBS_DIR/.pom.sha256"

POM="$SCRIPT_DIR/pom.xml"
PROPS_TEMPLATE="$SCRIPT_DIR/server.properties"
BROKER_LOG4J="$SCRIPT_DIR/log4j2.yaml"
TOOLS_LOG4J="$SCRIPT_DIR/tools-log4j2.yaml"

HOST="${EVI_KAFKA_HOST:-127.0.0.1}"
PORT="${EVI_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${EVI_KAFKA_CONTROLLER_PORT:-9093}"
BOOTSTRAP="$HOST:$PORT"
START_TIMEOUT="${EVI_KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT="${EVI_KAFKA_STOP_TIMEOUT:-30}"

if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
  JAVA="$JAVA_HOME/bin/java"
else
  JAVA="java"
fi
MVN="${MVN:-mvn}"

log() { echo "kafka: $*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- tools ----

# Alias -> main class (Kafka 4.3). Anything containing a dot is taken as a class name.
tool_class() {
  case "$1" in
    topics)              echo org.apache.kafka.tools.TopicCommand ;;
    consumer-groups)     echo org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    share-groups)        echo org.apache.kafka.tools.consumer.group.ShareGroupCommand ;;
    groups)              echo org.apache.kafka.tools.GroupsCommand ;;
    console-consumer)    echo org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    console-producer)    echo org.apache.kafka.tools.ConsoleProducer ;;
    get-offsets)         echo org.apache.kafka.tools.GetOffsetShell ;;
    broker-api-versions) echo org.apache.kafka.tools.BrokerApiVersionsCommand ;;
    metadata-quorum)     echo org.apache.kafka.tools.MetadataQuorumCommand ;;
    delete-records)      echo org.apache.kafka.tools.DeleteRecordsCommand ;;
    log-dirs)            echo org.apache.kafka.tools.LogDirsCommand ;;
    transactions)        echo org.apache.kafka.tools.TransactionsCommand ;;
    features)            echo org.apache.kafka.tools.FeatureCommand ;;
    cluster)             echo org.apache.kafka.tools.ClusterTool ;;
    configs)             echo kafka.admin.ConfigCommand ;;
    storage)             echo kafka.tools.StorageTool ;;
    *.*)                 echo "$1" ;;
    *) return 1 ;;
  esac
}
TOOL_ALIASES="topics consumer-groups share-groups groups console-consumer console-producer get-offsets"
TOOL_ALIASES+=" broker-api-versions metadata-quorum delete-records log-dirs transactions features cluster configs storage"

# Small, fast-starting JVM for short-lived CLI tools.
tool_jvm_opts() {
  # shellcheck disable=SC2206
  local extra=(${EVI_KAFKA_TOOL_OPTS:-})
  TOOL_JVM_OPTS=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$TOOLS_LOG4J" "${extra[@]}")
}

# ---------------------------------------------------------------- fetch ----

pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

libs_current() {
  [[ -f "$STAMP_FILE" ]] && [[ "$(cat "$STAMP_FILE")" == "$(pom_hash)" ]]
}

# Caller must hold the lock.
fetch_locked() {
  if libs_current; then
    return 0
  fi
  command -v "$MVN" >/dev/null || die "maven ('$MVN') not found; install maven (and a JDK 17+)"
  log "fetching Kafka jars into $LIBS_DIR (maven; ~45 MB, ~20 s with an empty ~/.m2) ..."
  local tmp="$KAFKA_HOME/libs.tmp.$$"
  rm -rf "$KAFKA_HOME"/libs.tmp.* # leftovers of an interrupted fetch
  # Output goes to a file (quiet maven still prints colour codes); shown on failure.
  if ! "$MVN" -q -B -f "$POM" dependency:copy-dependencies \
        -DoutputDirectory="$tmp" -DincludeScope=runtime >"$KAFKA_HOME/fetch.log" 2>&1; then
    sed 's/\x1b\[[0-9;]*m//g' "$KAFKA_HOME/fetch.log" >&2
    rm -rf "$tmp"
    die "maven could not fetch the jars (output above, also in $KAFKA_HOME/fetch.log)"
  fi
  pom_hash >"$tmp/.pom.sha256"
  rm -rf "$LIBS_DIR"
  mv "$tmp" "$LIBS_DIR"
  log "fetched $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars ($(du -sh "$LIBS_DIR" | cut -f1))"
}

with_lock() {
  mkdir -p "$KAFKA_HOME"
  if command -v flock >/dev/null; then
    exec 9>"$LOCK_FILE"
    flock 9
  fi
  "$@"
}

ensure_libs() {
  libs_current || with_lock fetch_locked
}

# ------------------------------------------------------------- helpers ----

T0="$EPOCHREALTIME"
elapsed() { awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# Does a Kafka broker answer on $BOOTSTRAP? One ApiVersions (v0) round trip in
# pure bash: ~10 ms instead of ~1.5 s for a JVM-based tool. The broker only
# processes requests on its client listener once start-up has completed.
#   request : size=13 | api_key=18 | api_version=0 | correlation_id="EVI1" | client_id="evi"
#   response: size | correlation_id | error_code (0 = ok)
broker_answers() {
  # shellcheck disable=SC2016
  timeout 10 bash -c '
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    printf "\x00\x00\x00\x0d\x00\x12\x00\x00EVI1\x00\x03evi" >&3
    r="$(head -c 10 <&3 | od -An -tx1 | tr -d " \n")"
    [[ "${r:8:8}" == 45564931 && "${r:16:4}" == 0000 ]]
  ' "$HOST" "$PORT" 2>/dev/null
}

# Pid from the pid file, if that process is alive and is our broker.
running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
  echo "$pid"
}

render_props() {
  local text
  text="$(<"$PROPS_TEMPLATE")"
  text="${text//@HOST@/"$HOST"}"
  text="${text//@CONTROLLER_PORT@/"$CONTROLLER_PORT"}"
  text="${text//@PORT@/"$PORT"}"
  text="${text//@DATA_DIR@/"$DATA_DIR"}"
  printf '%s\n' "$text" >"$PROPS_FILE.tmp"
  mv "$PROPS_FILE.tmp" "$PROPS_FILE"
}

# Kafka cluster ids are 16 random bytes, base64url without padding (Uuid.toString).
new_cluster_id() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" == -* || "$id" == AAAAAAAAAAAAAAAAAAAAA[AQ] ]] || break
  done
  echo "$id"
}

format_storage_once() {
  [[ -f "$DATA_DIR/meta.properties" ]] && return 0
  local id
  id="$(new_cluster_id)"
  log "formatting $DATA_DIR (cluster id $id)"
  mkdir -p "$DATA_DIR"
  tool_jvm_opts
  # Static quorum (controller.quorum.voters) => no --standalone / --initial-controllers.
  "$JAVA" "${TOOL_JVM_OPTS[@]}" -cp "$LIBS_DIR/*" kafka.tools.StorageTool \
    format --cluster-id "$id" --config "$PROPS_FILE" >"$LOG_DIR/format.out" 2>&1 \
    || { cat "$LOG_DIR/format.out" >&2; die "storage format failed"; }
}

# Lines of server.log written before this start (so failures show only new output).
LOG_MARK=0

# kafka.out (the JVM's own stdout/stderr) goes last: a fatal exit such as
# "Terminating due to java.lang.OutOfMemoryError" is written only there.
show_log_tail() {
  local n="${1:-30}"
  if [[ -s "$LOG_DIR/server.log" ]]; then
    echo "----- $LOG_DIR/server.log (last $n lines of this run) -----" >&2
    tail -n "+$((LOG_MARK + 1))" "$LOG_DIR/server.log" | tail -n "$n" >&2
  fi
  if [[ -s "$LOG_DIR/kafka.out" ]]; then
    echo "----- $LOG_DIR/kafka.out (last $n lines) -----" >&2
    tail -n "$n" "$LOG_DIR/kafka.out" >&2
  fi
}

# ------------------------------------------------------------ commands ----

cmd_fetch() { with_lock fetch_locked; }

start_locked() {
  fetch_locked
  local pid
  if broker_answers; then
    if pid="$(running_pid)"; then
      log "already running (pid $pid) on $BOOTSTRAP"
    else
      log "a broker already answers on $BOOTSTRAP (not started by this script); leaving it alone"
    fi
    return 0
  fi
  if pid="$(running_pid)"; then
    # Ours, but not answering yet (still starting, or wedged): wait for it below.
    log "broker process $pid exists but does not answer yet; waiting"
  else
    if port_open "$HOST" "$PORT"; then
      die "port $BOOTSTRAP is in use by something that is not a Kafka broker"
    fi
    if port_open "$HOST" "$CONTROLLER_PORT"; then
      die "controller port $HOST:$CONTROLLER_PORT is in use (set EVI_KAFKA_CONTROLLER_PORT)"
    fi
    mkdir -p "$LOG_DIR" "$DATA_DIR"
    render_props
    format_storage_once

    # shellcheck disable=SC2206
    local heap=(${EVI_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}) extra=(${EVI_KAFKA_JVM_OPTS:-})
    local jvm=("${heap[@]}" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20
      -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
      -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
      "-Dlog4j2.configurationFile=$BROKER_LOG4J" "-Dkafka.logs.dir=$LOG_DIR"
      "${extra[@]}")

    LOG_MARK="$( { wc -l <"$LOG_DIR/server.log"; } 2>/dev/null || echo 0)"  # none yet on a fresh clone
    log "starting broker on $BOOTSTRAP (logs: $LOG_DIR)"
    rm -f "$PID_FILE"
    # New session so Ctrl-C in the calling shell does not reach the broker;
    # the inner shell writes its own pid and then becomes java via exec.
    # fd 9 (the lock) is closed so the broker does not hold it.
    # shellcheck disable=SC2016
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PID_FILE" \
      "$JAVA" "${jvm[@]}" -cp "$LIBS_DIR/*" kafka.Kafka "$PROPS_FILE" \
      </dev/null >"$LOG_DIR/kafka.out" 2>&1 9>&- &
    local i
    for ((i = 0; i < 50; i++)); do [[ -s "$PID_FILE" ]] && break; sleep 0.1; done
  fi

  local deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! pid="$(running_pid)"; then
      show_log_tail 30
      die "broker exited during start-up"
    fi
    if broker_answers; then
      log "up (pid $pid) on $BOOTSTRAP after $(elapsed)s"
      return 0
    fi
    sleep 0.2
  done
  show_log_tail 30
  die "broker did not answer on $BOOTSTRAP within ${START_TIMEOUT}s (pid ${pid:-?} left running; try '$0 stop')"
}

cmd_start() { with_lock start_locked; }

stop_locked() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    if port_open "$HOST" "$PORT"; then
      log "not started by this script, but something listens on $BOOTSTRAP; leaving it alone"
    else
      log "not running"
    fi
    return 0
  fi
  log "stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    log "still alive after ${STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$PID_FILE"
  log "stopped"
}

cmd_stop() { with_lock stop_locked; }

cmd_restart() { with_lock stop_locked; start_locked; }

cmd_status() {
  local pid=""
  pid="$(running_pid)" || true
  if broker_answers; then
    echo "kafka: running on $BOOTSTRAP${pid:+ (pid $pid)}"
    return 0
  fi
  if [[ -n "$pid" ]]; then
    echo "kafka: process $pid exists but does not answer on $BOOTSTRAP"
  else
    echo "kafka: not running ($BOOTSTRAP)"
  fi
  return 1
}

reset_locked() {
  stop_locked
  log "deleting $DATA_DIR"
  rm -rf "$DATA_DIR" "$PROPS_FILE"
}

cmd_reset() { with_lock reset_locked; }

cmd_tool() {
  [[ $# -ge 1 ]] || die "usage: $0 tool NAME [args...]  (NAME: $TOOL_ALIASES or a class name)"
  local name="$1" cls
  shift
  cls="$(tool_class "$name")" || die "unknown tool '$name' (known: $TOOL_ALIASES; or give a class name)"
  ensure_libs
  tool_jvm_opts
  exec 9>&- # never hand the fetch lock to a long-running tool
  exec "$JAVA" "${TOOL_JVM_OPTS[@]}" -cp "$LIBS_DIR/*" "$cls" "$@"
}

cmd_classpath() { ensure_libs; echo "$LIBS_DIR/*"; }

cmd_logs() { tail -n "${1:-50}" "$LOG_DIR/server.log"; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_restart ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    tool) cmd_tool "$@" ;;
    classpath) cmd_classpath ;;
    logs) cmd_logs "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
