#!/usr/bin/env bash
# A Keyframe cluster on one machine, on loopback: N API nodes (`keyframe serve --role api`) behind
# nginx, M workers (`keyframe worker`), on the machine's PostgreSQL and Redis and a Ceph RGW. For
# trying the split roles, and what the cluster tests run on (test/cluster/, `npm run test:cluster`).
#
# Usage (from a checkout after `npm ci`):
#   scripts/cluster.sh up            # start everything and wait until every API node is ready behind nginx
#   scripts/cluster.sh down          # stop exactly what `up` started (the RGW only if `up` started it)
#   scripts/cluster.sh status        # each process, running or not; exits 1 when one is not
#   scripts/cluster.sh env           # export lines for the CLI and tests: eval "$(scripts/cluster.sh env)"
#   scripts/cluster.sh start NAME    # start one process again (api1..apiN, worker1..workerM)
#   scripts/cluster.sh stop NAME     # SIGTERM (its orderly shutdown); its process group SIGKILLed if it
#                                    # outlives KEYFRAME_SHUTDOWN_TIMEOUT_SECONDS + 5 s
#   scripts/cluster.sh kill NAME     # SIGKILL of the process alone: a crash (a render it ran stops on its
#                                    # broken progress pipe)
#
# Env read by `up` (defaults):
#   CLUSTER_DIR=/tmp/keyframe-cluster   state: env file, pids, one log per process, nginx.conf (0700)
#   CLUSTER_API_NODES=3  CLUSTER_WORKERS=2
#   CLUSTER_PORT=18080                  nginx; API node i listens on CLUSTER_PORT+i
#   CLUSTER_DATABASE=keyframe_cluster   made afresh by `up` on CLUSTER_POSTGRES_URL's server (refused
#                                       while another client is connected to it)
#   CLUSTER_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres   (a role that may CREATE DATABASE)
#   CLUSTER_BUCKET=keyframe-cluster     S3 bucket, created by the nodes (S3_CREATE_BUCKET=true)
#   CLUSTER_RGW_PORT=CLUSTER_PORT+400  CLUSTER_MON_PORT=CLUSTER_PORT+300   the RGW `up` starts
#   CLUSTER_START_SECONDS=60            how long a process may take to become ready
#   KEYFRAME_REDIS_URL=redis://127.0.0.1:6379  KEYFRAME_REDIS_PREFIX=CLUSTER_DATABASE (its keys are deleted by `up`)
#   KEYFRAME_DATABASE_POOL_SIZE=4       per process: the cluster's processes share one PostgreSQL
#   S3_ENDPOINT (+ S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, S3_REGION, S3_FORCE_PATH_STYLE): an S3
#     service to use; unset, `up` starts a Ceph RGW of its own (scripts/ceph-rgw.sh) and `down` stops it
#   Every other KEYFRAME_* variable, and LOG_LEVEL, is passed to every process (e.g.
#   KEYFRAME_GENERATION_LEASE_SECONDS=3). The database URL, public URL and signing secret are the
#   cluster's own: one random KEYFRAME_SIGNING_SECRET shared by every node, kept in the env file
#   (0600) and never printed.
# Later commands read the settings `up` wrote to CLUSTER_DIR/env; only CLUSTER_DIR is needed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER_DIR=${CLUSTER_DIR:-/tmp/keyframe-cluster}
ENV_FILE=$CLUSTER_DIR/env
PIDS=$CLUSTER_DIR/pids
LOGS=$CLUSTER_DIR/logs
NGINX_DIR=$CLUSTER_DIR/nginx
CEPH_STATE=$CLUSTER_DIR/ceph
TEMPLATE=$ROOT/deploy/nginx/keyframe.conf

log() { printf '[cluster %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# True when something accepts TCP connections on 127.0.0.1:$1.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The start time of process $1 (/proc/PID/stat field 22, clock ticks since boot), or nothing when
# it is gone or a zombie (dead, not reaped yet: PID 1 of a container may take a while). A PID file
# holds PID and start time: together they name one process, so a PID the kernel has reused for
# another process since is never signalled.
start_time() {
  local stat fields
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  # After the command name in parentheses (which may itself hold spaces): state, ppid, ...
  read -ra fields <<<"${stat##*) }"
  if [[ ${fields[0]} != Z ]]; then echo "${fields[19]}"; fi
}

# Records the PID of process $1, just started in the background as $2.
record_pid() { echo "$2 $(start_time "$2")" >"$PIDS/$1"; }

# The PID recorded for $1 (empty when none).
recorded_pid() {
  local pid
  if [[ -f $PIDS/$1 ]]; then read -r pid _ <"$PIDS/$1" && echo "$pid"; fi
}

# True while the process recorded for $1 runs.
alive() {
  local pid started
  [[ -f $PIDS/$1 ]] || return 1
  read -r pid started <"$PIDS/$1"
  [[ -n $started && $(start_time "$pid") == "$started" ]]
}

# Replaces the calling (sub)shell with "$@", run from the checkout with the env file as its whole
# environment (plus PATH and HOME): nothing of the caller's environment leaks in, so that `start`
# from a test runner or a shell with other KEYFRAME_* settings starts the same process as `up` did.
# Every step execs, so the PID of a background `exec_in_cluster_env … &` is the command's own.
exec_in_cluster_env() {
  cd "$ROOT"
  # shellcheck disable=SC2016 # expanded by the inner bash: $1 is the env file, "$@" the command
  exec env -i PATH="$PATH" HOME="${HOME:-/root}" bash -c 'set -a; . "$1"; shift; exec "$@"' _ "$ENV_FILE" "$@"
}

# A short Node script run from the checkout, so that it finds the project's own pg and ioredis
# (present after `npm ci`; psql and redis-cli need not be installed). Arguments: process.argv[1..].
node_eval() { (cd "$ROOT" && node -e "$1" -- "${@:2}"); }

# One setting `up` wrote, read back in a subshell: the env file is never sourced into this shell,
# whose environment nginx and the RGW scripts inherit.
env_value() {
  # shellcheck source=/dev/null # written by `up`
  if [[ -f $ENV_FILE ]]; then (set +u; . "$ENV_FILE"; printf '%s' "${!1-}"); fi
}

# The processes of the cluster, from the env file: api1..apiN worker1..workerM.
names() { env_value CLUSTER_NAMES; }

known_name() {
  local n
  for n in $(names); do
    if [[ $n == "$1" ]]; then return 0; fi
  done
  return 1
}

# Where API node $1 (api<i>) listens.
api_port() { echo $(($(env_value CLUSTER_PORT) + ${1#api})); }

# Prints the last lines of a process's log (what a failure message shows).
tail_log() {
  if [[ -f $LOGS/$1.log ]]; then tail -n 25 "$LOGS/$1.log" | sed "s/^/    $1| /" >&2; fi
}

# Waits, at most $2 seconds, until "${@:3}" succeeds; fails early when process $1 died.
wait_ready() {
  local name=$1 secs=$2 end
  shift 2
  end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    alive "$name" || { log "$name exited during start-up"; tail_log "$name"; return 1; }
    ((SECONDS < end)) || { log "$name not ready within ${secs} s"; tail_log "$name"; return 1; }
    sleep 0.2
  done
}

http_ok() { curl -fsS --max-time 2 -o /dev/null "$1"; }
# Any HTTP answer at all (an S3 endpoint answers an anonymous GET of / with 403 or 404).
answers_http() { curl -sS --max-time 3 -o /dev/null "$1"; }

# True once the log of $1 holds, after byte $2, the line a worker prints when it takes jobs. (No
# `| grep -q`: grep leaving early would fail the pipeline with SIGPIPE under pipefail.)
worker_running() { [[ $(tail -c +"$(($2 + 1))" "$LOGS/$1.log") == *'keyframe worker running generation jobs'* ]]; }

# Starts one Keyframe process in the background and records its PID; does not wait.
launch() {
  local name=$1 args port=0
  case $name in
    api*) args=(serve --role api); port=$(api_port "$name") ;;
    worker*) args=(worker) ;;
  esac
  if [[ $name == api* ]] && port_in_use "$port"; then die "$name: 127.0.0.1:$port is already in use"; fi
  mkdir -p "$CLUSTER_DIR/data/$name" "$LOGS"
  # setsid: a Ctrl-C in the terminal that ran `up` does not reach the cluster, and `stop` can end
  # the process's whole group (its ffmpeg children) when it outlives its shutdown timeout.
  exec_in_cluster_env setsid env PORT="$port" KEYFRAME_DATA_DIR="$CLUSTER_DIR/data/$name" node "$ROOT/bin/keyframe.js" "${args[@]}" \
    </dev/null >>"$LOGS/$name.log" 2>&1 &
  record_pid "$name" $!
}

# Starts one process and waits until it is ready: an API node when /readyz answers 200 (database,
# store and Redis reachable), a worker when it says it takes jobs.
start_one() {
  local name=$1 offset=0
  if [[ -f $LOGS/$name.log ]]; then offset=$(stat -c %s "$LOGS/$name.log"); fi
  launch "$name"
  case $name in
    api*) wait_ready "$name" "$(env_value CLUSTER_START_SECONDS)" http_ok "http://127.0.0.1:$(api_port "$name")/readyz" ;;
    worker*) wait_ready "$name" "$(env_value CLUSTER_START_SECONDS)" worker_running "$name" "$offset" ;;
  esac
}

# SIGTERM, then SIGKILL of its process group once the orderly shutdown had its time; removes the PID file.
stop_one() {
  local name=$1 signal=${2:-TERM} pid bound end timeout
  if ! alive "$name"; then
    log "$name is not running"
    rm -f "$PIDS/$name"
    return 0
  fi
  pid=$(recorded_pid "$name")
  kill "-$signal" "$pid" 2>/dev/null || true
  # A Keyframe process exits by itself within KEYFRAME_SHUTDOWN_TIMEOUT_SECONDS (default 30) of
  # SIGTERM; a SIGKILL is immediate; nginx's fast shutdown is too.
  bound=5
  if [[ $signal == TERM && $name != nginx ]]; then
    timeout=$(env_value KEYFRAME_SHUTDOWN_TIMEOUT_SECONDS)
    bound=$((${timeout:-30} + 5))
  fi
  end=$((SECONDS + bound))
  while alive "$name" && ((SECONDS < end)); do sleep 0.05; done
  if alive "$name"; then
    log "$name (pid $pid) still running ${bound} s after SIG$signal: SIGKILL to its process group"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    end=$((SECONDS + 5))
    while alive "$name" && ((SECONDS < end)); do sleep 0.05; done
    if alive "$name"; then die "$name (pid $pid) survived SIGKILL"; fi
  fi
  log "$name stopped (SIG$signal, pid $pid)"
  rm -f "$PIDS/$name"
}

ensure_nginx() {
  command -v nginx >/dev/null 2>&1 && return 0
  ((EUID == 0)) || die "nginx is not installed and installing it needs root: apt-get install nginx"
  log "installing nginx (apt-get install nginx)"
  # Debian's postinst may also start the system nginx (on port 80, where systemd runs): this
  # cluster never uses it, it runs its own nginx with its own prefix, config and pid file.
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
  command -v nginx >/dev/null 2>&1 || die "apt-get install nginx did not provide an nginx command"
}

# The nginx.conf of this cluster: process settings (pid, logs, temp paths in the state dir) around
# deploy/nginx/keyframe.conf with its placeholders filled.
write_nginx_conf() {
  local port=$1 nodes=$2 i line site='' user=''
  while IFS= read -r line; do
    if [[ $line == *@API_NODE@* ]]; then
      for ((i = 1; i <= nodes; i++)); do site+="${line//@API_NODE@/127.0.0.1:$((port + i))}"$'\n'; done
    else
      site+="${line//@LISTEN@/127.0.0.1:$port}"$'\n'
    fi
  done <"$TEMPLATE"
  printf '%s' "$site" >"$NGINX_DIR/keyframe.conf"
  # Run by root, nginx's workers would drop to `nobody`, who cannot enter the 0700 state dir
  # where the temp paths are: they run as the user who ran `up` instead.
  if ((EUID == 0)); then user="user $(id -un) $(id -gn);"; fi
  cat >"$NGINX_DIR/nginx.conf" <<EOF
# Written by scripts/cluster.sh up; the Keyframe part is keyframe.conf (deploy/nginx/keyframe.conf, filled).
$user
daemon off;
worker_processes auto;
pid $NGINX_DIR/nginx.pid;
error_log $LOGS/nginx.log warn;
events { worker_connections 1024; }
http {
    # Which node answered each request (\$upstream_addr: every node tried, in order) and with what:
    # how a test or an operator sees a retry. \$uri: the path only, as Keyframe's own logs.
    log_format keyframe '\$time_iso8601 \$remote_addr "\$request_method \$uri" \$status upstream=\$upstream_addr '
                        'upstream_status=\$upstream_status \${request_time}s';
    access_log $LOGS/nginx.access.log keyframe;
    client_body_temp_path $NGINX_DIR/tmp/body;
    proxy_temp_path $NGINX_DIR/tmp/proxy;
    fastcgi_temp_path $NGINX_DIR/tmp/fastcgi;
    uwsgi_temp_path $NGINX_DIR/tmp/uwsgi;
    scgi_temp_path $NGINX_DIR/tmp/scgi;
    include $NGINX_DIR/keyframe.conf;
}
EOF
}

start_nginx() {
  mkdir -p "$NGINX_DIR/tmp"
  # -e: the error log before the config is read (Debian's compiled-in default is /var/log/nginx).
  nginx -t -q -e "$LOGS/nginx.log" -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" || die "nginx refused $NGINX_DIR/nginx.conf (nginx -t above)"
  # shellcheck disable=SC2094 # nginx appends to its log itself; its stdout and stderr go there too
  (exec setsid nginx -e "$LOGS/nginx.log" -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf") </dev/null >>"$LOGS/nginx.log" 2>&1 &
  record_pid nginx $!
}

postgres_prepare() {
  # Drops and creates the cluster's database (a fresh one per `up`, as in the tests' own
  # databases), and prints its URL. This cluster's own processes are stopped by now: a connection
  # still on the database is someone else's (another cluster started with the same
  # CLUSTER_DATABASE, a psql session), and `up` refuses rather than drop it from under them.
  # shellcheck disable=SC2016 # JavaScript, not shell: nothing to expand
  node_eval '
    const pg = require("pg");
    const [adminUrl, name] = process.argv.slice(1);
    const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 3000 });
    client.on("error", () => {});
    let connected = false;
    (async () => {
      await client.connect();
      connected = true;
      // A backend of a client that has just gone (a process `down` stopped) may linger a moment.
      for (let tries = 1; ; tries++) {
        const { rows } = await client.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1", [name]);
        if (rows[0].n === 0) break;
        if (tries === 10) throw new Error(`database ${name} is in use (${rows[0].n} connections): another cluster on it? stop it, or set CLUSTER_DATABASE`);
        await new Promise((r) => setTimeout(r, 300));
      }
      await client.query(`DROP DATABASE IF EXISTS ${name}`);
      await client.query(`CREATE DATABASE ${name}`);
      await client.end();
      const url = new URL(adminUrl);
      url.pathname = "/" + name;
      process.stdout.write(url.toString());
    })().catch((err) => {
      const where = new URL(adminUrl);
      const hint = connected ? "" : " (start it with: pg_ctlcluster 15 main start)";
      console.error(`PostgreSQL at ${where.hostname}:${where.port || 5432}: ${err.message}${hint}`);
      process.exit(1);
    });
  ' "$1" "$2"
}

redis_prepare() {
  # Deletes the keys of the cluster's prefix (queues and counters of an earlier run: every key
  # Keyframe writes is `<prefix>:…`); fails, naming the start command, when Redis does not answer within 2 s.
  # shellcheck disable=SC2016 # JavaScript, not shell: nothing to expand
  node_eval '
    const { Redis } = require("ioredis");
    const [url, prefix] = process.argv.slice(1);
    const client = new Redis(url, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 1, retryStrategy: () => null });
    client.on("error", () => {});
    (async () => {
      await client.connect();
      let cursor = "0", deleted = 0;
      do {
        const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
        cursor = next;
        if (keys.length > 0) deleted += await client.del(...keys);
      } while (cursor !== "0");
      console.error(`deleted ${deleted} Redis keys of prefix ${prefix}`);
      client.disconnect();
    })().catch((err) => {
      console.error(`Redis at ${new URL(url).host}: ${err.message} (start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no)`);
      process.exit(1);
    });
  ' "$1" "$2"
}

# Writes the env file: what every process and the `env` command read. Values are shell-quoted.
write_env() {
  local -n vars=$1
  local name
  (
    umask 077
    for name in "${!vars[@]}"; do printf 'export %s=%q\n' "$name" "${vars[$name]}"; done | sort >"$ENV_FILE.new"
  )
  mv "$ENV_FILE.new" "$ENV_FILE"
}

cmd_up() {
  local t0=$SECONDS name all_up=1
  if [[ -f $ENV_FILE ]]; then
    for name in $(names) nginx; do
      if ! alive "$name"; then all_up=0; fi
    done
    if ((all_up)); then
      log "already up at $(env_value CLUSTER_URL) ($CLUSTER_DIR); run '$0 down' first to start it afresh"
      return 0
    fi
  fi
  if compgen -G "$PIDS/*" >/dev/null; then
    log "partly up (a process was stopped or died): stopping what is left, then starting afresh"
    cmd_down
  fi

  local nodes=${CLUSTER_API_NODES:-3} workers=${CLUSTER_WORKERS:-2} port=${CLUSTER_PORT:-18080}
  local database=${CLUSTER_DATABASE:-keyframe_cluster} bucket=${CLUSTER_BUCKET:-keyframe-cluster}
  [[ $nodes =~ ^[1-9][0-9]?$ ]] || die "CLUSTER_API_NODES must be 1 to 99, got '$nodes'"
  [[ $workers =~ ^[0-9][0-9]?$ ]] || die "CLUSTER_WORKERS must be 0 to 99, got '$workers'"
  if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1024 || port + nodes > 65535)); then
    die "CLUSTER_PORT must be 1024 or more and leave room for $nodes API ports above it, got '$port'"
  fi
  # The name goes into DROP/CREATE DATABASE as it is.
  [[ $database =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "CLUSTER_DATABASE must be a plain lower-case PostgreSQL name, got '$database'"
  [[ -f $ROOT/dist/cli/main.js ]] || die "$ROOT/dist is missing: run npm ci (it builds dist/) first"
  command -v curl >/dev/null 2>&1 || die "curl is needed (apt-get install curl)"
  local p
  for ((p = port; p <= port + nodes; p++)); do
    if port_in_use "$p"; then die "127.0.0.1:$p is already in use (another cluster? set CLUSTER_PORT)"; fi
  done
  ensure_nginx

  mkdir -p "$CLUSTER_DIR"
  chmod 700 "$CLUSTER_DIR"
  # Each process's log starts afresh (a worker's readiness is a line in it); the last run's stays beside it.
  if [[ -d $LOGS ]]; then rm -rf "$LOGS.previous" && mv "$LOGS" "$LOGS.previous"; fi
  mkdir -p "$PIDS" "$LOGS" "$NGINX_DIR"
  # From here on a failure stops whatever was started; the logs stay for reading.
  trap 'rc=$?; if ((rc)); then log "up failed: stopping what was started (logs in $LOGS)"; cmd_down; fi' EXIT

  declare -A settings=()
  # Passed-through settings first, so that the cluster's own ones below win.
  for name in $(compgen -e); do
    case $name in
      KEYFRAME_ROLE | KEYFRAME_DATA_DIR | KEYFRAME_DATABASE_URL | KEYFRAME_PUBLIC_URL | KEYFRAME_SIGNING_SECRET | KEYFRAME_STORAGE) ;;
      KEYFRAME_* | LOG_LEVEL) settings[$name]=${!name} ;;
    esac
  done

  log "S3"
  local rgw_port=${CLUSTER_RGW_PORT:-$((port + 400))} mon_port=${CLUSTER_MON_PORT:-$((port + 300))}
  # A shell that ran `eval "$(cluster.sh env)"` names this cluster's own RGW in S3_ENDPOINT (stopped
  # by a `down`, or by the restart above): not a service from outside, so the cluster starts it again.
  if [[ ${S3_ENDPOINT:-} == "http://127.0.0.1:$rgw_port" ]]; then unset S3_ENDPOINT; fi
  if [[ -n ${S3_ENDPOINT:-} ]]; then
    # An S3 service the caller named (CI's RGW): used as it is, and never stopped by `down`.
    answers_http "$S3_ENDPOINT" || die "S3_ENDPOINT=$S3_ENDPOINT does not answer (unset it and '$0 up' starts a Ceph RGW of its own)"
    settings[S3_ENDPOINT]=$S3_ENDPOINT
    settings[S3_ACCESS_KEY_ID]=${S3_ACCESS_KEY_ID:?S3_ENDPOINT is set: S3_ACCESS_KEY_ID is needed too}
    settings[S3_SECRET_ACCESS_KEY]=${S3_SECRET_ACCESS_KEY:?S3_ENDPOINT is set: S3_SECRET_ACCESS_KEY is needed too}
    settings[S3_REGION]=${S3_REGION:-us-east-1}
    settings[S3_FORCE_PATH_STYLE]=${S3_FORCE_PATH_STYLE:-true}
    log "using the S3 service at $S3_ENDPOINT"
  else
    # An RGW of the cluster's own, in its state dir and on its own ports: whatever `down` stops
    # there is this cluster's, and an RGW a developer runs on 7480 is left alone.
    command -v radosgw >/dev/null 2>&1 || bash "$ROOT/scripts/ceph-rgw.sh" install >&2
    local rgw_env
    rgw_env=$(CEPH_DIR=$CEPH_STATE RGW_PORT=$rgw_port MON_PORT=$mon_port bash "$ROOT/scripts/ceph-rgw.sh" up) || die "Ceph RGW did not start (scripts/ceph-rgw.sh up, output above)"
    while read -r _ assignment; do settings[${assignment%%=*}]=${assignment#*=}; done <<<"$rgw_env"
  fi
  settings[KEYFRAME_STORAGE]=s3
  settings[S3_BUCKET]=$bucket
  settings[S3_CREATE_BUCKET]=true

  log "PostgreSQL: a fresh database $database"
  settings[KEYFRAME_DATABASE_URL]=$(postgres_prepare "${CLUSTER_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}" "$database") ||
    die "PostgreSQL (message above)"
  settings[KEYFRAME_DATABASE_POOL_SIZE]=${KEYFRAME_DATABASE_POOL_SIZE:-4}

  settings[KEYFRAME_REDIS_URL]=${KEYFRAME_REDIS_URL:-redis://127.0.0.1:6379}
  # Named after the database by default: a cluster on another CLUSTER_DATABASE shares nothing with this one.
  settings[KEYFRAME_REDIS_PREFIX]=${KEYFRAME_REDIS_PREFIX:-$database}
  log "Redis: prefix ${settings[KEYFRAME_REDIS_PREFIX]}"
  redis_prepare "${settings[KEYFRAME_REDIS_URL]}" "${settings[KEYFRAME_REDIS_PREFIX]}" || die "Redis (message above)"

  # Every node signs alike and names the one address clients reach: nginx.
  settings[KEYFRAME_SIGNING_SECRET]=$(node -e 'process.stdout.write(require("node:crypto").randomBytes(32).toString("base64url"))')
  settings[KEYFRAME_PUBLIC_URL]=http://127.0.0.1:$port
  settings[KEYFRAME_SHUTDOWN_TIMEOUT_SECONDS]=${KEYFRAME_SHUTDOWN_TIMEOUT_SECONDS:-30}
  settings[HOST]=127.0.0.1
  local i list='' urls=''
  for ((i = 1; i <= nodes; i++)); do list+="api$i "; urls+="http://127.0.0.1:$((port + i)) "; done
  for ((i = 1; i <= workers; i++)); do list+="worker$i "; done
  settings[CLUSTER_DIR]=$CLUSTER_DIR
  settings[CLUSTER_URL]=http://127.0.0.1:$port
  settings[CLUSTER_PORT]=$port
  settings[CLUSTER_API_NODES]=$nodes
  settings[CLUSTER_WORKERS]=$workers
  settings[CLUSTER_NAMES]=${list% }
  settings[CLUSTER_API_URLS]=${urls% }
  settings[CLUSTER_START_SECONDS]=${CLUSTER_START_SECONDS:-60}
  write_env settings

  # Migrations are a deploy step (docs/deploy.md): once, before any node starts.
  log "keyframe migrate"
  (exec_in_cluster_env node bin/keyframe.js migrate) >&2 || die "keyframe migrate (output above)"

  log "starting $nodes API nodes and $workers workers"
  for name in $(names); do launch "$name"; done
  local failed=''
  for name in $(names); do
    case $name in
      api*) wait_ready "$name" "${settings[CLUSTER_START_SECONDS]}" http_ok "http://127.0.0.1:$(api_port "$name")/readyz" || failed+="$name " ;;
      worker*) wait_ready "$name" "${settings[CLUSTER_START_SECONDS]}" worker_running "$name" 0 || failed+="$name " ;;
    esac
  done
  [[ -z $failed ]] || die "not ready: $failed(their logs above, all in $LOGS)"

  log "nginx on 127.0.0.1:$port"
  write_nginx_conf "$port" "$nodes"
  start_nginx
  # Through nginx, each node's /readyz in turn (least_conn spreads sequential requests over the nodes).
  wait_ready nginx "${settings[CLUSTER_START_SECONDS]}" http_ok "http://127.0.0.1:$port/readyz" || die "nginx does not proxy /readyz"
  for ((i = 1; i <= nodes; i++)); do http_ok "http://127.0.0.1:$port/readyz" || die "nginx: /readyz failed on request $i of $nodes"; done

  trap - EXIT
  log "up in $((SECONDS - t0)) s: ${settings[CLUSTER_URL]} -> ${settings[CLUSTER_API_URLS]}; workers: $workers; state and logs in $CLUSTER_DIR"
  log "use it with: eval \"\$(bash $0 env)\"  (stop with: bash $0 down)"
}

cmd_down() {
  if [[ ! -d $PIDS ]] && [[ ! -d $CEPH_STATE/pids ]]; then
    log "nothing to stop in $CLUSTER_DIR"
    return 0
  fi
  # nginx first: no request reaches a node that is stopping. Then every node at once (each
  # bounded by its shutdown timeout), then the RGW they were using.
  if [[ -f $PIDS/nginx ]]; then stop_one nginx; fi
  local name pids=()
  for name in "$PIDS"/*; do
    [[ -f $name ]] || continue
    stop_one "$(basename "$name")" &
    pids+=($!)
  done
  for name in "${pids[@]}"; do wait "$name" || true; done
  # The RGW lives in the state dir only when `up` started it.
  if [[ -d $CEPH_STATE/pids ]]; then CEPH_DIR=$CEPH_STATE bash "$ROOT/scripts/ceph-rgw.sh" down; fi
  # The secret is only good while the cluster runs; the logs stay for reading.
  rm -f "$ENV_FILE"
  rmdir "$PIDS" 2>/dev/null || true
  log "down (logs kept in $LOGS)"
}

cmd_status() {
  [[ -f $ENV_FILE ]] || { log "not up ($ENV_FILE missing)"; return 1; }
  local name ok=0 port
  echo "cluster at $(env_value CLUSTER_URL), state in $CLUSTER_DIR"
  for name in nginx $(names); do
    if alive "$name"; then
      port=''
      if [[ $name == api* ]]; then port=", port $(api_port "$name")"; fi
      echo "$name: running, pid $(recorded_pid "$name")$port"
    else
      echo "$name: NOT RUNNING"
      ok=1
    fi
  done
  if [[ -d $CEPH_STATE/pids ]]; then echo "rgw: started by this cluster at $(env_value S3_ENDPOINT)"; else echo "rgw: $(env_value S3_ENDPOINT) (not this cluster's)"; fi
  return $ok
}

# Export lines for the CLI and tests; never the signing secret, nor the processes' bind address.
cmd_env() {
  [[ -f $ENV_FILE ]] || die "not up ($ENV_FILE missing): run '$0 up'"
  grep -v -e '^export KEYFRAME_SIGNING_SECRET=' -e '^export HOST=' "$ENV_FILE"
}

named() {
  [[ -f $ENV_FILE ]] || die "not up ($ENV_FILE missing): run '$0 up'"
  [[ -n ${1:-} ]] || die "which process? one of: $(names)"
  known_name "$1" || die "no process '$1' in this cluster; one of: $(names)"
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  start)
    named "${2:-}"
    if alive "$2"; then
      log "$2 already running (pid $(recorded_pid "$2"))"
    else
      start_one "$2" || die "$2 did not start"
      log "$2 started (pid $(recorded_pid "$2"))"
    fi
    ;;
  stop) named "${2:-}" && stop_one "$2" TERM ;;
  kill) named "${2:-}" && stop_one "$2" KILL ;;
  *) echo "usage: $0 up|down|status|env|start NAME|stop NAME|kill NAME" >&2; exit 2 ;;
esac
