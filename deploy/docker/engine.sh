#!/usr/bin/env bash
# A Docker engine that can run docker-compose.yml offline, for tests/compose (idempotent; each
# step is skipped when already done, so a warm run takes seconds):
#   1. dockerd answering (started here, as root, when installed but not running; no systemd);
#   2. the compose and buildx CLI plugins, unless the client has them already: built from their
#      Go modules once, cached under ~/.cache/evi-ci/<name>-<version>, linked into
#      ~/.docker/cli-plugins/;
#   3. the base image debian:bookworm-slim (deploy/docker/base-image.sh: pulled, or made with
#      debootstrap where no registry is reachable; it then stays in docker's image store).
# Exit 0 when the engine is ready; otherwise 1 with the reason on stderr.
set -euo pipefail
cd "$(dirname "$0")/../.."
COMPOSE_VERSION=v5.6.0
BUILDX_VERSION=v0.38.2
CACHE="${EVI_CI_CACHE:-$HOME/.cache/evi-ci}"
PLUGINS="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
log() { echo "docker-engine: $*" >&2; }

command -v docker >/dev/null || { log "no docker client (apt-get install docker.io)"; exit 1; }

if ! timeout 10 docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || { log "no dockerd (apt-get install docker.io)"; exit 1; }
  [ "$(id -u)" = 0 ] || { log "dockerd is not running, and only root can start it here"; exit 1; }
  log "starting dockerd (log: /var/log/evi-dockerd.log)"
  # setsid: the engine outlives this script and the CI step that ran it.
  setsid dockerd >>/var/log/evi-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 60); do
    timeout 5 docker info >/dev/null 2>&1 && break
    sleep 1
  done
  timeout 10 docker info >/dev/null 2>&1 \
    || { tail -20 /var/log/evi-dockerd.log >&2; log "dockerd did not answer within 60 s"; exit 1; }
fi

go_bin() { command -v go || { [ -x /usr/local/go/bin/go ] && echo /usr/local/go/bin/go; }; }

# plugin NAME MODULE VERSION PACKAGE VERSION-VAR CHECK-COMMAND...: build once (the version
# stamped as the project's own build does), link into the client's plugins.
plugin() {
  local name="$1" module="$2" version="$3" package="$4" version_var="$5"
  shift 5
  # A client that has the plugin already (Docker Desktop, docker-ce's packages) keeps its own.
  if "$@" >/dev/null 2>&1; then
    return 0
  fi
  local binary="$CACHE/docker-$name-$version" go dir src
  if [ ! -x "$binary" ]; then
    go="$(go_bin)" || { log "no Go toolchain to build docker-$name"; return 1; }
    log "building docker-$name $version from its Go module (once; a few minutes)"
    dir="$("$go" mod download -json "$module@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
    [ -n "$dir" ] || { log "could not download $module@$version"; return 1; }
    # The module cache is read-only; the build needs its own copy (go.mod's excludes apply
    # inside the module, which is why `go install module@version` refuses it).
    src="$(mktemp -d)"
    cp -r "$dir/." "$src" && chmod -R u+w "$src"
    mkdir -p "$CACHE"
    (cd "$src" && CGO_ENABLED=0 "$go" build -trimpath \
        -ldflags "-w -X $module/$version_var=$version" -o "$binary.tmp" "$package") \
      || { rm -rf "$src"; log "building docker-$name failed"; return 1; }
    rm -rf "$src"
    mv "$binary.tmp" "$binary"
  fi
  mkdir -p "$PLUGINS"
  ln -sf "$binary" "$PLUGINS/docker-$name"
  "$@" >/dev/null || { log "docker-$name does not run"; return 1; }
}

plugin compose github.com/docker/compose/v5 "$COMPOSE_VERSION" ./cmd internal.Version \
  docker compose version
# Compose builds with BuildKit (secrets, RUN --mount) only through buildx.
plugin buildx github.com/docker/buildx "$BUILDX_VERSION" ./cmd/buildx version.Version \
  docker buildx version

bash deploy/docker/base-image.sh debian:bookworm-slim
