#!/usr/bin/env bash
# Apache Kafka (KRaft) for dev, tests and CI -- no Docker, no tarball: one broker, optionally
# SASL_SSL with ACLs, or a small cluster of combined broker+controller nodes on loopback.
#
# Jars come from Maven Central via deploy/kafka/pom.xml; everything else
# (rendered config, data, logs, pid, certificates, passwords) lives under <cache>/kafka/ where
# <cache> is $EVI_CACHE_DIR or <repo>/.cache (an installed evi's copy: ~/.cache/evi).
#
# Usage: deploy/kafka/kafka.sh {fetch|start|stop|restart|status|reset|certs|acls|cluster|tool|classpath|logs} [args]
#   fetch            download the jars (no-op if the cache matches pom.xml)
#   start            fetch if needed, format storage once, start broker, wait until it answers
#                    (sasl_ssl: also makes the certificates and passwords, and the ACLs of
#                    EVI_KAFKA_TOPIC_PREFIX, once)
#   stop             SIGTERM, wait up to 30 s, then SIGKILL (no-op if not running)
#   restart          stop + start (data kept)
#   status           exit 0 iff a broker answers on the port
#   reset            stop and delete the data dir (topics, offsets, cluster id, ACLs, users);
#                    certificates and passwords are kept
#   certs            make the CA, the broker certificate and the users' passwords if missing;
#                    print where they are (the clients' CA file, each user's env file)
#   acls [PREFIX]    (sasl_ssl, broker up) grant each evi principal its ACLs on topics and
#                    groups named PREFIX.* / PREFIX-* (default EVI_KAFKA_TOPIC_PREFIX or evi)
#   cluster start [N]      start (or complete) an N-node cluster (default EVI_KAFKA_NODES, 3)
#   cluster stop [NODE]    stop every node, or one
#   cluster status         one line per node; exit 0 iff every node answers
#   cluster bootstrap      print host:port,host:port,... of the nodes
#   cluster reset          stop every node and delete the cluster's data
#   tool NAME args   run a Kafka CLI tool (alias such as `topics`, or a class name)
#   classpath        print the java classpath
#   logs [N]         print the last N (default 50) lines of server.log
#
# Environment:
#   EVI_CACHE_DIR                 cache root (default <repo>/.cache, installed: ~/.cache/evi)
#   EVI_KAFKA_HOST                listen/advertise address (default 127.0.0.1)
#   EVI_KAFKA_PORT                client port (default 9092)
#   EVI_KAFKA_CONTROLLER_PORT     KRaft controller port (default 9093)
#   EVI_KAFKA_SECURITY            plaintext (default) or sasl_ssl; a data dir remembers the mode
#                                 it was formatted for, so stop/status need no flag
#   EVI_KAFKA_TOPIC_PREFIX        topic prefix the ACLs of `start` are for (default evi)
#   EVI_KAFKA_NODES               cluster size for `cluster start` (default 3)
#   EVI_KAFKA_CLUSTER_PORT        client port of cluster node 1; node i gets +i-1 (default 9192)
#   EVI_KAFKA_CLUSTER_CONTROLLER_PORT  controller port of node 1; +i-1 likewise (default 9292)
#   EVI_KAFKA_HEAP_OPTS           broker heap, per node (default -Xms256m -Xmx512m)
#   EVI_KAFKA_JVM_OPTS            extra broker JVM options
#   EVI_KAFKA_TOOL_OPTS           JVM options for CLI tools
#   EVI_KAFKA_START_TIMEOUT       seconds to wait for the broker (default 60)
#   EVI_KAFKA_STOP_TIMEOUT        seconds before SIGKILL (default 30)
#   JAVA_HOME / MVN               java and maven to use
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
# A checkout caches in its .cache; the copy an installed evi carries (site-packages/evi/_data/
# kafka) in the user's cache dir, as evi/paths.py does (`evi kafka` passes EVI_CACHE_DIR).
if [[ -f "$REPO_ROOT/pyproject.toml" ]]; then
  CACHE_DIR="${EVI_CACHE_DIR:-$REPO_ROOT/.cache}"
else
  CACHE_DIR="${EVI_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/evi}"
fi
KAFKA_HOME="$CACHE_DIR/kafka"
LIBS_DIR="$KAFKA_HOME/libs"
LOCK_FILE="$KAFKA_HOME/.lock"
STAMP_FILE="$LIBS_DIR/.pom.sha256"
SECURITY_DIR="$KAFKA_HOME/security"
CLUSTER_HOME="$KAFKA_HOME/cluster"

POM="$SCRIPT_DIR/pom.xml"
PROPS_TEMPLATE="$SCRIPT_DIR/server.properties"
SASL_SSL_OVERLAY="$SCRIPT_DIR/sasl_ssl.properties"
CLUSTER_OVERLAY="$SCRIPT_DIR/cluster.properties"
BROKER_LOG4J="$SCRIPT_DIR/log4j2.yaml"
TOOLS_LOG4J="$SCRIPT_DIR/tools-log4j2.yaml"

HOST="${EVI_KAFKA_HOST:-127.0.0.1}"
START_TIMEOUT="${EVI_KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT="${EVI_KAFKA_STOP_TIMEOUT:-30}"
TOPIC_PREFIX="${EVI_KAFKA_TOPIC_PREFIX:-evi}"
CLUSTER_PORT="${EVI_KAFKA_CLUSTER_PORT:-9192}"
CLUSTER_CONTROLLER_PORT="${EVI_KAFKA_CLUSTER_CONTROLLER_PORT:-9292}"

# The evi principals (SCRAM-SHA-512 users); `admin` is the super user. Their ACLs: acl_rules.
USERS=(admin evi-producer evi-processor evi-gateway)

if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
  JAVA="$JAVA_HOME/bin/java"
else
  JAVA="java"
fi
MVN="${MVN:-mvn}"

log() { echo "kafka: $*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- nodes ----
# Every command works on one node at a time: the single broker (select_single), or node i of
# the cluster (select_node). These set the node's paths, ports and config overlays.

select_single() {
  NODE_HOME="$KAFKA_HOME"
  NODE_ID=1
  PORT="${EVI_KAFKA_PORT:-9092}"
  CONTROLLER_PORT="${EVI_KAFKA_CONTROLLER_PORT:-9093}"
  VOTERS="1@$HOST:$CONTROLLER_PORT"
  CLUSTER_NODES=0
  node_paths
  resolve_security
}

select_node() { # i n
  NODE_HOME="$CLUSTER_HOME/node$1"
  NODE_ID="$1"
  CLUSTER_NODES="$2"
  PORT=$((CLUSTER_PORT + $1 - 1))
  CONTROLLER_PORT=$((CLUSTER_CONTROLLER_PORT + $1 - 1))
  local i
  VOTERS=""
  for ((i = 1; i <= $2; i++)); do
    VOTERS+="${VOTERS:+,}$i@$HOST:$((CLUSTER_CONTROLLER_PORT + i - 1))"
  done
  node_paths
  SECURITY=plaintext
  [[ "${EVI_KAFKA_SECURITY:-plaintext}" == plaintext ]] \
    || die "EVI_KAFKA_SECURITY=$EVI_KAFKA_SECURITY: the cluster runs plaintext only (docs/kafka.md)"
}

node_paths() {
  DATA_DIR="$NODE_HOME/data"
  LOG_DIR="$NODE_HOME/logs"
  PROPS_FILE="$NODE_HOME/server.properties"
  PID_FILE="$NODE_HOME/kafka.pid"
  MODE_FILE="$NODE_HOME/data.security" # the mode DATA_DIR was formatted for
  BOOTSTRAP="$HOST:$PORT"
}

# SECURITY: EVI_KAFKA_SECURITY, else what the data dir was formatted for, else plaintext.
resolve_security() {
  SECURITY="${EVI_KAFKA_SECURITY:-}"
  if [[ -z "$SECURITY" && -f "$DATA_DIR/meta.properties" && -f "$MODE_FILE" ]]; then
    SECURITY="$(cat "$MODE_FILE")"
  fi
  SECURITY="${SECURITY:-plaintext}"
  case "$SECURITY" in
    plaintext | sasl_ssl) ;;
    *) die "EVI_KAFKA_SECURITY=$SECURITY: use plaintext or sasl_ssl" ;;
  esac
}

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
  local began=$SECONDS
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
  log "fetched $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars ($(du -sh "$LIBS_DIR" | cut -f1)) in $((SECONDS - began)) s"
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

# Does a Kafka broker answer on $BOOTSTRAP? One ApiVersions (v0) round trip: ~10 ms instead of
# ~1.5 s for a JVM-based tool. The broker only processes requests on its client listener once
# start-up has completed. Kafka answers ApiVersions before any SASL handshake, so on a SASL_SSL
# listener the same bytes go through a TLS session (openssl s_client).
#   request : size=13 | api_key=18 | api_version=0 | correlation_id="EVI1" | client_id="evi"
#   response: size | correlation_id | error_code (0 = ok)
API_VERSIONS_V0='\x00\x00\x00\x0d\x00\x12\x00\x00EVI1\x00\x03evi'
answer_ok() { [[ "${1:8:8}" == 45564931 && "${1:16:4}" == 0000 ]]; }

broker_answers() {
  local r
  if [[ "$SECURITY" == sasl_ssl ]]; then
    # s_client ends when its stdin does: the answer comes within the 0.5 s the request stays open.
    r="$( { printf "$API_VERSIONS_V0"; sleep 0.5; } \
          | timeout 5 openssl s_client -quiet -no_ign_eof -connect "$BOOTSTRAP" 2>/dev/null \
          | head -c 10 | od -An -tx1 | tr -d ' \n')" || true
  else
    # shellcheck disable=SC2016
    r="$(timeout 10 bash -c '
      exec 3<>"/dev/tcp/$0/$1" || exit 1
      printf "$2" >&3
      head -c 10 <&3 | od -An -tx1 | tr -d " \n"
    ' "$HOST" "$PORT" "$API_VERSIONS_V0" 2>/dev/null)" || true
  fi
  answer_ok "$r"
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

# ---------------------------------------------------------- properties ----

# `base` with each key of `overlay` replacing the base's line in place; the overlay's other
# keys appended under a header. Comments of the overlay are not copied (read them there).
merge_props() { # base-file overlay-file
  awk -v from="${2#"$REPO_ROOT"/}" '
    function key(line) { return substr(line, 1, index(line, "=") - 1) }
    FNR == NR { if ($0 ~ /^[^#[:space:]][^=]*=/) { k = key($0); line[k] = $0; order[++n] = k }; next }
    /^[^#[:space:]][^=]*=/ { k = key($0); if (k in line) { print line[k]; done[k] = 1; next } }
    { print }
    END {
      head = 0
      for (i = 1; i <= n; i++) {
        if (order[i] in done) continue
        if (!head) { printf "\n############################# from %s #############################\n", from; head = 1 }
        print line[order[i]]
      }
    }
  ' "$2" "$1"
}

render_props() {
  local text tmp="$PROPS_FILE.tmp"
  cp "$PROPS_TEMPLATE" "$tmp"
  if [[ "$SECURITY" == sasl_ssl ]]; then
    merge_props "$tmp" "$SASL_SSL_OVERLAY" >"$tmp.2" && mv "$tmp.2" "$tmp"
  fi
  if ((CLUSTER_NODES > 0)); then
    merge_props "$tmp" "$CLUSTER_OVERLAY" >"$tmp.2" && mv "$tmp.2" "$tmp"
  fi
  text="$(<"$tmp")"
  text="${text//@HOST@/"$HOST"}"
  text="${text//@CONTROLLER_PORT@/"$CONTROLLER_PORT"}"
  text="${text//@PORT@/"$PORT"}"
  text="${text//@DATA_DIR@/"$DATA_DIR"}"
  text="${text//@NODE_ID@/"$NODE_ID"}"
  text="${text//@VOTERS@/"$VOTERS"}"
  text="${text//@REPLICATION@/"$((CLUSTER_NODES < 3 ? CLUSTER_NODES : 3))"}"
  text="${text//@MIN_ISR@/"$((CLUSTER_NODES >= 3 ? 2 : 1))"}"
  if [[ "$SECURITY" == sasl_ssl ]]; then
    text="${text//@SECURITY_DIR@/"$SECURITY_DIR"}"
    text="${text//@ADMIN_PASSWORD@/"$(password_of admin)"}"
    text="${text//@KEYSTORE_PASSWORD@/"$(<"$SECURITY_DIR/keystore.password")"}"
  fi
  [[ "$text" != *@[A-Z_]*@* ]] || die "unfilled placeholder in $PROPS_FILE: $(grep -o '@[A-Z_]*@' <<<"$text" | head -1)"
  rm -f "$tmp"
  (umask 077 && printf '%s\n' "$text" >"$tmp")
  mv "$tmp" "$PROPS_FILE"
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

# The nodes of a cluster share one id, made by the first node formatted.
cluster_id() {
  ((CLUSTER_NODES > 0)) || { new_cluster_id; return; }
  [[ -s "$CLUSTER_HOME/cluster.id" ]] || new_cluster_id >"$CLUSTER_HOME/cluster.id"
  cat "$CLUSTER_HOME/cluster.id"
}

format_storage_once() {
  if [[ -f "$DATA_DIR/meta.properties" ]]; then
    local was=plaintext
    [[ -f "$MODE_FILE" ]] && was="$(cat "$MODE_FILE")"
    [[ "$was" == "$SECURITY" ]] \
      || die "$DATA_DIR was formatted for $was, not $SECURITY: '$0 reset' first, or use another EVI_CACHE_DIR"
    return 0
  fi
  local id args=()
  id="$(cluster_id)"
  log "formatting $DATA_DIR (cluster id $id, $SECURITY)"
  mkdir -p "$DATA_DIR"
  if [[ "$SECURITY" == sasl_ssl ]]; then
    # KRaft keeps SCRAM credentials in the metadata log: the broker's own user (and ours) must
    # be there before the first start, so they are written into the bootstrap snapshot.
    local user
    for user in "${USERS[@]}"; do
      args+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(password_of "$user")]")
    done
  fi
  tool_jvm_opts
  # Static quorum (controller.quorum.voters) => no --standalone / --initial-controllers.
  "$JAVA" "${TOOL_JVM_OPTS[@]}" -cp "$LIBS_DIR/*" kafka.tools.StorageTool \
    format --cluster-id "$id" --config "$PROPS_FILE" "${args[@]}" >"$LOG_DIR/format.out" 2>&1 \
    || { cat "$LOG_DIR/format.out" >&2; die "storage format failed"; }
  echo "$SECURITY" >"$MODE_FILE"
}

# Per node, lines of server.log written before this start (so failures show only new output).
LOG_MARKS=()

# kafka.out (the JVM's own stdout/stderr) goes last: a fatal exit such as
# "Terminating due to java.lang.OutOfMemoryError" is written only there.
show_log_tail() {
  local n="${1:-30}"
  if [[ -s "$LOG_DIR/server.log" ]]; then
    echo "----- $LOG_DIR/server.log (last $n lines of this run) -----" >&2
    tail -n "+$((${LOG_MARKS[NODE_ID]:-0} + 1))" "$LOG_DIR/server.log" | tail -n "$n" >&2
  fi
  if [[ -s "$LOG_DIR/kafka.out" ]]; then
    echo "----- $LOG_DIR/kafka.out (last $n lines) -----" >&2
    tail -n "$n" "$LOG_DIR/kafka.out" >&2
  fi
}

# ------------------------------------------------------------ security ----
# Made once under <cache>/kafka/security (mode 700, never committed): a CA, the broker's key and
# certificate signed by it, a password per user, and for each user a Java client config
# (<user>.properties, for Kafka's tools) and an env file (<user>.env, for evi's services).

new_password() { head -c 24 /dev/urandom | base64 | tr -d '+/=\n' | head -c 24; }

password_of() { cat "$SECURITY_DIR/$1.password"; }

# The names the broker certificate is valid for: loopback, and $HOST if it is something else.
broker_san() {
  local san="IP:127.0.0.1,DNS:localhost"
  if [[ "$HOST" =~ ^[0-9.]+$ ]]; then
    [[ "$HOST" == 127.0.0.1 ]] || san+=",IP:$HOST"
  elif [[ "$HOST" != localhost ]]; then
    san+=",DNS:$HOST"
  fi
  echo "$san"
}

certs_locked() {
  command -v openssl >/dev/null || die "openssl not found (Debian package openssl)"
  mkdir -p "$SECURITY_DIR"
  chmod 700 "$SECURITY_DIR"
  local d="$SECURITY_DIR" san user made=""
  (
    umask 077
    cd "$d"
    if [[ ! -s ca.crt || ! -s ca.key ]]; then
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
        -subj "/CN=evi local Kafka CA" -keyout ca.key -out ca.crt \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        2>/dev/null || die "openssl could not make the CA"
      rm -f broker.crt
    fi
    san="$(broker_san)"
    if [[ ! -s broker.p12 || ! -s broker.crt || "$(cat broker.san 2>/dev/null)" != "$san" ]]; then
      [[ -s keystore.password ]] || new_password >keystore.password
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$HOST" \
        -keyout broker.key -out broker.csr 2>/dev/null || die "openssl could not make the broker key"
      printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyAgreement\nextendedKeyUsage=serverAuth,clientAuth\n' \
        "$san" >broker.ext
      openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
        -extfile broker.ext -out broker.crt 2>/dev/null || die "openssl could not sign the broker certificate"
      openssl pkcs12 -export -in broker.crt -inkey broker.key -certfile ca.crt -name broker \
        -passout "file:keystore.password" -out broker.p12 || die "openssl could not write broker.p12"
      echo "$san" >broker.san
      rm -f broker.csr broker.ext
    fi
  ) || exit 1
  for user in "${USERS[@]}"; do
    if [[ ! -s "$d/$user.password" ]]; then
      (umask 077 && new_password >"$d/$user.password")
      made+=" $user"
    fi
    write_client_files "$user"
  done
  [[ -z "$made" ]] || log "new passwords for:$made"
}

# <user>.properties (Java clients: kafka-acls, kafka-topics ... --command-config) and
# <user>.env (EVI_KAFKA__* for evi's services; bootstrap servers not included).
write_client_files() {
  local user="$1" pw
  pw="$(password_of "$user")"
  (
    umask 077
    cat >"$SECURITY_DIR/$user.properties" <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$user" password="$pw";
ssl.truststore.type=PEM
ssl.truststore.location=$SECURITY_DIR/ca.crt
PROPS
    cat >"$SECURITY_DIR/$user.env" <<ENV
EVI_KAFKA__SECURITY_PROTOCOL=SASL_SSL
EVI_KAFKA__SASL_MECHANISM=SCRAM-SHA-512
EVI_KAFKA__SASL_USERNAME=$user
EVI_KAFKA__SASL_PASSWORD=$pw
EVI_KAFKA__SSL_CAFILE=$SECURITY_DIR/ca.crt
ENV
  )
}

print_security_paths() {
  log "CA for clients:   $SECURITY_DIR/ca.crt"
  log "users (SCRAM-SHA-512): ${USERS[*]}; passwords in $SECURITY_DIR/<user>.password,"
  log "  evi env in <user>.env, Java client config in <user>.properties"
}

# The ACLs of each evi principal on the topics and groups of `prefix` (docs/security.md has the
# table and why each is needed). One line per kafka-acls call, `|`-separated:
#   principal | operations | resources (prefixed patterns: topic:NAME or group:NAME)
# Nothing on the cluster resource: an idempotent producer needs only WRITE on a topic (KIP-679).
acl_rules() {
  local p="$1"
  cat <<RULES
evi-producer|Write Describe|topic:$p.frames. topic:$p.streams
evi-producer|DescribeConfigs|topic:$p.frames.
evi-processor|Read Describe|topic:$p.frames. group:$p-processor-
evi-processor|Write Describe|topic:$p.results. topic:$p.dlq.
evi-processor|Create Write Read Describe|topic:$p.inflight.
evi-gateway|Read Describe|topic:$p.frames. topic:$p.results. topic:$p.streams
evi-gateway|Describe|group:$p-processor- group:evi-gateway-
RULES
}

acls_locked() {
  local prefix="$1" principal ops resources r
  [[ "$SECURITY" == sasl_ssl ]] || die "acls: the broker at $BOOTSTRAP is not sasl_ssl (EVI_KAFKA_SECURITY)"
  [[ "$prefix" =~ ^[a-z][a-z0-9_-]*$ ]] || die "acls: bad topic prefix '$prefix'"
  broker_answers || die "acls: no broker answers on $BOOTSTRAP"
  tool_jvm_opts
  # One kafka-acls argument list per rule, tab-separated, all run in one JVM (AclBatch.java).
  while IFS='|' read -r principal ops resources; do
    printf '%s\t' --bootstrap-server "$BOOTSTRAP" --command-config "$SECURITY_DIR/admin.properties" \
      --add --allow-principal "User:$principal" --resource-pattern-type prefixed
    for r in $ops; do printf '%s\t' --operation "$r"; done
    for r in $resources; do printf '%s\t' "--${r%%:*}" "${r#*:}"; done
    echo
  done < <(acl_rules "$prefix") \
    | "$JAVA" "${TOOL_JVM_OPTS[@]}" -cp "$LIBS_DIR/*" "$SCRIPT_DIR/AclBatch.java" >"$LOG_DIR/acls.out" 2>&1 \
    || { cat "$LOG_DIR/acls.out" >&2; die "kafka-acls failed (prefix $prefix)"; }
  acl_rules "$prefix" | sha256sum | cut -d' ' -f1 >"$NODE_HOME/acls.$prefix"
  log "ACLs for topic prefix '$prefix' granted to ${USERS[*]:1} ($(elapsed)s)"
}

# `start` grants the ACLs of EVI_KAFKA_TOPIC_PREFIX once per data dir (and again if the rules
# change); `reset` forgets them with the data.
acls_once() {
  local stamp="$NODE_HOME/acls.$TOPIC_PREFIX"
  [[ -f "$stamp" && "$(cat "$stamp")" == "$(acl_rules "$TOPIC_PREFIX" | sha256sum | cut -d' ' -f1)" ]] \
    || acls_locked "$TOPIC_PREFIX"
}

# ---------------------------------------------------------- node start ----

# Start the selected node's JVM unless a broker already answers; returns without waiting.
launch_node() {
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
    return 0
  fi
  if port_open "$HOST" "$PORT"; then
    die "port $BOOTSTRAP is in use by something that is not a Kafka broker"
  fi
  if port_open "$HOST" "$CONTROLLER_PORT"; then
    die "controller port $HOST:$CONTROLLER_PORT is in use (set EVI_KAFKA_CONTROLLER_PORT)"
  fi
  mkdir -p "$LOG_DIR" "$DATA_DIR"
  [[ "$SECURITY" == plaintext ]] || certs_locked
  render_props
  format_storage_once

  # shellcheck disable=SC2206
  local heap=(${EVI_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}) extra=(${EVI_KAFKA_JVM_OPTS:-})
  local jvm=("${heap[@]}" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$BROKER_LOG4J" "-Dkafka.logs.dir=$LOG_DIR"
    "${extra[@]}")

  LOG_MARKS[NODE_ID]="$( { wc -l <"$LOG_DIR/server.log"; } 2>/dev/null || echo 0)"  # none yet on a fresh clone
  log "starting broker $NODE_ID on $BOOTSTRAP ($SECURITY; logs: $LOG_DIR)"
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
}

# Wait until the selected node answers (its process must stay alive), up to `deadline`.
wait_node() { # deadline (in $SECONDS)
  local pid
  while ((SECONDS < $1)); do
    if broker_answers; then  # ours, or one launch_node left alone (not started by this script)
      pid="$(running_pid)" && log "up (pid $pid) on $BOOTSTRAP after $(elapsed)s"
      return 0
    fi
    if ! pid="$(running_pid)"; then
      show_log_tail 30
      die "broker $NODE_ID exited during start-up"
    fi
    sleep 0.2
  done
  show_log_tail 30
  die "broker $NODE_ID did not answer on $BOOTSTRAP within ${START_TIMEOUT}s (pid ${pid:-?} left running; try '$0 stop')"
}

stop_node() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    if port_open "$HOST" "$PORT"; then
      log "not started by this script, but something listens on $BOOTSTRAP; leaving it alone"
    else
      log "not running ($BOOTSTRAP)"
    fi
    return 0
  fi
  log "stopping pid $pid ($BOOTSTRAP)"
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

node_status() {
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

# ------------------------------------------------------------ commands ----

cmd_fetch() { with_lock fetch_locked; }

start_locked() {
  fetch_locked
  select_single
  launch_node
  wait_node $((SECONDS + START_TIMEOUT))
  if [[ "$SECURITY" == sasl_ssl ]]; then
    acls_once
    print_security_paths
  fi
}

cmd_start() { with_lock start_locked; }

stop_locked() { select_single; stop_node; }

cmd_stop() { with_lock stop_locked; }

cmd_restart() { with_lock stop_locked; start_locked; }

cmd_status() { select_single; node_status; }

reset_locked() {
  stop_locked
  log "deleting $DATA_DIR"
  rm -rf "$DATA_DIR" "$PROPS_FILE" "$MODE_FILE" "$NODE_HOME"/acls.*
}

cmd_reset() { with_lock reset_locked; }

cmd_certs() {
  select_single
  with_lock certs_locked
  print_security_paths
}

cmd_acls() {
  select_single
  ensure_libs
  mkdir -p "$LOG_DIR"
  acls_locked "${1:-$TOPIC_PREFIX}"
}

# ------------------------------------------------------------- cluster ----
# N combined broker+controller nodes under <cache>/kafka/cluster/node<i>, one static quorum.

# The size the cluster was first started with (its voters are fixed at format), else `want`.
cluster_size() { # want
  local n="${1:-${EVI_KAFKA_NODES:-}}" have=""
  [[ -s "$CLUSTER_HOME/nodes" ]] && have="$(cat "$CLUSTER_HOME/nodes")"
  if [[ -n "$have" && -n "$n" && "$n" != "$have" ]]; then
    die "the cluster under $CLUSTER_HOME has $have nodes, not $n ('$0 cluster reset' first)"
  fi
  n="${n:-${have:-3}}"
  [[ "$n" =~ ^[1-9]$ ]] || die "cluster size '$n': give 1-9 nodes"
  echo "$n"
}

cluster_start_locked() { # n
  local n="$1" i deadline
  fetch_locked
  mkdir -p "$CLUSTER_HOME"
  echo "$n" >"$CLUSTER_HOME/nodes"
  # Every node is launched before any is waited for: none answers before a quorum is up.
  for ((i = 1; i <= n; i++)); do select_node "$i" "$n"; launch_node; done
  deadline=$((SECONDS + START_TIMEOUT))
  for ((i = 1; i <= n; i++)); do select_node "$i" "$n"; wait_node "$deadline"; done
  log "cluster of $n up: $(cluster_bootstrap "$n")"
}

# One node: as `stop`. Every node: SIGTERM to all at once, then wait for all. One by one, the
# last nodes would wait for a quorum that is gone and need the SIGKILL after STOP_TIMEOUT.
cluster_stop_locked() { # n [node]
  local i pid pids=() deadline
  if [[ -n "${2:-}" ]]; then
    select_node "$2" "$1"
    stop_node
    return
  fi
  for ((i = 1; i <= $1; i++)); do
    select_node "$i" "$1"
    if pid="$(running_pid)"; then
      pids+=("$pid")
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  ((${#pids[@]})) || { log "no cluster node running"; return 0; }
  log "stopping ${#pids[@]} nodes (pids ${pids[*]})"
  deadline=$((SECONDS + STOP_TIMEOUT))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid still alive after ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
  done
  for ((i = 1; i <= $1; i++)); do select_node "$i" "$1"; rm -f "$PID_FILE"; done
  log "stopped"
}

cluster_bootstrap() { # n
  local i out=""
  for ((i = 1; i <= $1; i++)); do out+="${out:+,}$HOST:$((CLUSTER_PORT + i - 1))"; done
  echo "$out"
}

cmd_cluster() {
  local action="${1:-}" n rc=0 i
  [[ $# -gt 0 ]] && shift
  case "$action" in
    start) n="$(cluster_size "${1:-}")"; with_lock cluster_start_locked "$n" ;;
    stop)
      [[ -s "$CLUSTER_HOME/nodes" ]] || { log "no cluster under $CLUSTER_HOME"; return 0; }
      n="$(cluster_size)"; with_lock cluster_stop_locked "$n" "${1:-}" ;;
    status)
      n="$(cluster_size)"
      for ((i = 1; i <= n; i++)); do
        select_node "$i" "$n"
        echo -n "node $i: "
        node_status || rc=1
      done
      return "$rc" ;;
    bootstrap) cluster_bootstrap "$(cluster_size)" ;;
    reset)
      if [[ -s "$CLUSTER_HOME/nodes" ]]; then with_lock cluster_stop_locked "$(cluster_size)"; fi
      log "deleting $CLUSTER_HOME"
      rm -rf "$CLUSTER_HOME" ;;
    *) die "usage: $0 cluster {start [N]|stop [NODE]|status|bootstrap|reset}" ;;
  esac
}

# --------------------------------------------------------------- other ----

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

cmd_logs() { select_single; tail -n "${1:-50}" "$LOG_DIR/server.log"; }

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
    certs) cmd_certs ;;
    acls) cmd_acls "$@" ;;
    cluster) cmd_cluster "$@" ;;
    tool) cmd_tool "$@" ;;
    classpath) cmd_classpath ;;
    logs) cmd_logs "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
