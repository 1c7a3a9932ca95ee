#!/usr/bin/env bash
# Keyframe's S3 test backend: a single-node Ceph (1 mon, 1 memstore OSD, no mgr) with radosgw (beast)
# on 127.0.0.1, everything in one private directory: no /etc/ceph, no systemd, nothing left behind.
#
# Usage:
#   scripts/ceph-rgw.sh install   # apt-get Debian's Ceph packages (bookworm: 16.2.x pacific), ~1 min
#   scripts/ceph-rgw.sh up        # bootstrap + start mon, osd, radosgw; create the S3 user (~15 s);
#                                 # prints the env Keyframe's S3 tests read, as `export` lines on stdout
#   scripts/ceph-rgw.sh env       # prints those `export` lines again: eval "$(scripts/ceph-rgw.sh env)"
#   scripts/ceph-rgw.sh status    # the daemons this script started, and `ceph -s`
#   scripts/ceph-rgw.sh down      # stops exactly the daemons this script started (by PID), removes the dir
#
# Env (defaults):
#   CEPH_DIR=/tmp/keyframe-ceph   RGW_PORT=7480   MON_PORT=3300
#   S3_ACCESS_KEY_ID=keyframeaccesskey  S3_SECRET_ACCESS_KEY=keyframesecretkey0123456789
#   MEMSTORE_BYTES=4294967296 (memstore capacity; RAM is only used for data written)
#
# These are throw-away credentials of a loopback-only test cluster, never real ones.
set -euo pipefail

CEPH_DIR=${CEPH_DIR:-/tmp/keyframe-ceph}
RGW_PORT=${RGW_PORT:-7480}
MON_PORT=${MON_PORT:-3300}
S3_ACCESS_KEY_ID=${S3_ACCESS_KEY_ID:-keyframeaccesskey}
S3_SECRET_ACCESS_KEY=${S3_SECRET_ACCESS_KEY:-keyframesecretkey0123456789}
MEMSTORE_BYTES=${MEMSTORE_BYTES:-4294967296}
CONF=$CEPH_DIR/ceph.conf
ADMIN_KEYRING=$CEPH_DIR/client.admin.keyring
RGW_NAME=client.rgw.keyframe
RGW_POOLS=".rgw.root default.rgw.log default.rgw.control default.rgw.meta default.rgw.buckets.index default.rgw.buckets.data default.rgw.buckets.non-ec"

log() { printf '[ceph-rgw %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
ceph_() { timeout 60 ceph -c "$CONF" -k "$ADMIN_KEYRING" "$@"; }

# Wait until "$@" succeeds, at most $1 seconds.
wait_for() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  local f
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= end)); then log "timeout waiting for: $*"; return 1; fi
    for f in "$CEPH_DIR"/pids/*; do  # fail fast if a daemon we started died
      [[ -f $f ]] && ! kill -0 "$(<"$f")" 2>/dev/null && { log "$(basename "$f") died"; return 1; }
    done
    sleep 0.5
  done
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True when every daemon this script started is still running.
all_alive() {
  local f ok=0
  for f in "$CEPH_DIR"/pids/*; do
    [[ -f $f ]] || continue
    kill -0 "$(<"$f")" 2>/dev/null || { log "$(basename "$f") (pid $(<"$f")) died"; ok=1; }
  done
  return $ok
}

# Start a daemon in the foreground mode (-f) in the background, record its PID.
start_daemon() {
  local name=$1; shift
  setsid "$@" </dev/null >>"$CEPH_DIR/log/$name.stdout" 2>&1 &
  echo $! >"$CEPH_DIR/pids/$name"
  log "started $name pid $!"
}

cmd_install() {
  local pkgs=(ceph-mon ceph-osd radosgw ceph-common) missing=()
  command -v curl >/dev/null || pkgs+=(curl)
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    ((EUID == 0)) || { log "install needs root (apt-get install ${missing[*]})"; return 1; }
    apt-get update -qq
    # --no-install-recommends: ceph-mgr / ceph-mds / etc. are not needed.
    # No systemd (and policy-rc.d where present) means postinst starts no daemon.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  ceph --version
}

write_conf() {
  local fsid=$1
  cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon_host = v2:127.0.0.1:$MON_PORT
mon_initial_members = a
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_msgr1 = false
ms_bind_ipv6 = false
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
keyring = $ADMIN_KEYRING
run_dir = $CEPH_DIR/run
admin_socket = $CEPH_DIR/run/\$name.asok
log_file = $CEPH_DIR/log/\$name.log
log_to_stderr = false
err_to_stderr = true
crash_dir = $CEPH_DIR/crash
# single-OSD cluster
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
mon_warn_on_insecure_global_id_reclaim_allowed = false
auth_allow_insecure_global_id_reclaim = false
mon_max_pg_per_osd = 1000
mon_warn_on_pool_pg_num_not_power_of_two = false
# no ceph-mgr is run: without this, health turns HEALTH_ERR (MGR_DOWN) after 120 s; with it, HEALTH_WARN
mon_mgr_mkfs_grace = 315360000
# quieter logs
debug_ms = 0/0

[mon]
mon_data = $CEPH_DIR/mon/\$cluster-\$id
mon_cluster_log_file = $CEPH_DIR/log/cluster.log
mon_data_avail_warn = 2
mon_data_avail_crit = 1

[osd]
osd_data = $CEPH_DIR/osd/\$cluster-\$id
keyring = $CEPH_DIR/osd/\$cluster-\$id/keyring
osd_objectstore = memstore
memstore_device_bytes = $MEMSTORE_BYTES
osd_crush_update_on_start = true
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 1

[$RGW_NAME]
keyring = $CEPH_DIR/rgw.keyring
rgw_data = $CEPH_DIR/rgw
rgw_frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw_dns_name = 127.0.0.1
rgw_thread_pool_size = 64
rgw_enable_usage_log = false
rgw_enable_ops_log = false
EOF
}

cmd_up() {
  local t0=$SECONDS
  if [[ -e $CEPH_DIR/pids ]] && compgen -G "$CEPH_DIR/pids/*" >/dev/null; then
    log "$CEPH_DIR/pids not empty: run '$0 down' first"; return 1
  fi
  # Another RGW (or anything) on our ports would answer the readiness checks in place
  # of ours, whose daemon then dies on the taken port: refuse to start instead.
  local port
  for port in "$RGW_PORT" "$MON_PORT"; do
    if port_in_use "$port"; then log "127.0.0.1:$port is already in use (another RGW? '$0 down', or set RGW_PORT/MON_PORT)"; return 1; fi
  done
  rm -rf "$CEPH_DIR"
  mkdir -p "$CEPH_DIR"/{run,log,pids,crash,mon,osd/ceph-0,rgw}
  # on any failure below: show the logs' tails and stop whatever was started
  trap 'rc=$?; if ((rc)); then log "up failed (rc $rc)"; tail -n 20 "$CEPH_DIR"/log/*.log >&2 || true; KEEP_CEPH_DIR=1 cmd_down; fi' EXIT
  chmod 700 "$CEPH_DIR"

  local fsid osd_uuid osd_key
  # the kernel's UUID source: uuidgen (uuid-runtime) is not always installed
  fsid=$(</proc/sys/kernel/random/uuid)
  osd_uuid=$(</proc/sys/kernel/random/uuid)
  write_conf "$fsid"

  log "keyrings"
  ceph-authtool --create-keyring "$CEPH_DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$ADMIN_KEYRING" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
  ceph-authtool --create-keyring "$CEPH_DIR/rgw.keyring" --gen-key -n "$RGW_NAME" \
    --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw' >/dev/null
  ceph-authtool "$CEPH_DIR/mon.keyring" --import-keyring "$ADMIN_KEYRING" >/dev/null
  ceph-authtool "$CEPH_DIR/mon.keyring" --import-keyring "$CEPH_DIR/rgw.keyring" >/dev/null
  osd_key=$(ceph-authtool --gen-print-key)

  log "monmap + mon mkfs"
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$MON_PORT]" "$CEPH_DIR/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$CEPH_DIR/monmap" --keyring "$CEPH_DIR/mon.keyring"
  start_daemon mon.a ceph-mon -c "$CONF" -f -i a
  wait_for 60 ceph_ mon stat

  log "osd.0 (memstore)"
  # registers osd.0 and its cephx key in one go
  local id
  id=$(printf '{"cephx_secret": "%s"}' "$osd_key" | ceph_ osd new "$osd_uuid" -i -)
  [[ $id == 0 ]] || { log "unexpected osd id $id"; return 1; }
  ceph-authtool --create-keyring "$CEPH_DIR/osd/ceph-0/keyring" -n osd.0 --add-key "$osd_key" >/dev/null
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$CEPH_DIR/log/osd.0.mkfs" 2>&1
  start_daemon osd.0 ceph-osd -c "$CONF" -f -i 0
  wait_for 60 bash -c "ceph -c '$CONF' -k '$ADMIN_KEYRING' osd dump --format json | grep -q '\"up\":1'"

  log "rgw pools (pre-created in parallel: otherwise radosgw makes them one by one at start-up and on the first CreateBucket/PutObject, ~2 s each)"
  local pool pids=()
  for pool in $RGW_POOLS; do ceph_ osd pool create "$pool" 8 8 >/dev/null 2>&1 & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid"; done
  pids=()
  for pool in $RGW_POOLS; do ceph_ osd pool application enable "$pool" rgw >/dev/null 2>&1 & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid"; done

  log "radosgw"
  start_daemon rgw radosgw -c "$CONF" -n "$RGW_NAME" -f
  wait_for 120 curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$RGW_PORT/"

  log "S3 user"
  timeout 60 radosgw-admin -c "$CONF" -k "$ADMIN_KEYRING" user create --uid=keyframe --display-name=keyframe \
    --access-key="$S3_ACCESS_KEY_ID" --secret="$S3_SECRET_ACCESS_KEY" >/dev/null
  all_alive || return 1
  trap - EXIT
  log "up in $((SECONDS - t0)) s: http://127.0.0.1:$RGW_PORT (stop with: $0 down)"
  cmd_env
}

# The settings Keyframe's S3 store and tests read; stdout only, so `eval "$(... env)"` works.
cmd_env() {
  cat <<EOF
export S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
export S3_REGION=us-east-1
export S3_FORCE_PATH_STYLE=true
export S3_ACCESS_KEY_ID=$S3_ACCESS_KEY_ID
export S3_SECRET_ACCESS_KEY=$S3_SECRET_ACCESS_KEY
EOF
}

cmd_down() {
  # nothing started (install failed, or up never ran): only an empty directory may be left to remove
  [[ -d $CEPH_DIR/pids ]] || { log "nothing to stop"; rmdir "$CEPH_DIR" 2>/dev/null || true; return 0; }
  local f pid name
  # reverse order: rgw, osd, mon
  for name in rgw osd.0 mon.a; do
    f=$CEPH_DIR/pids/$name
    [[ -f $f ]] || continue
    pid=$(<"$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      if kill -0 "$pid" 2>/dev/null; then log "$name ($pid) still alive, SIGKILL"; kill -KILL "$pid" || true; fi
      log "stopped $name pid $pid"
    fi
    rm -f "$f"
  done
  if [[ ${KEEP_CEPH_DIR:-0} != 1 ]]; then rm -rf "$CEPH_DIR"; fi
}

cmd_status() {
  local f
  [[ -d $CEPH_DIR/pids ]] || { log "not up ($CEPH_DIR/pids missing)"; return 1; }
  for f in "$CEPH_DIR"/pids/*; do
    [[ -f $f ]] || continue
    if kill -0 "$(<"$f")" 2>/dev/null; then echo "$(basename "$f"): running, pid $(<"$f")"; else echo "$(basename "$f"): DEAD (pid $(<"$f"))"; fi
  done
  ceph_ -s
}

case ${1:-} in
  install) cmd_install ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: $0 install|up|env|status|down" >&2; exit 2 ;;
esac
