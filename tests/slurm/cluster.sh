#!/usr/bin/env bash
# A real single-node SLURM cluster for the tests (tests/e2e/test_slurm.py):
#
#   tests/slurm/cluster.sh start    install (if missing), configure, start, wait until the node is idle
#   tests/slurm/cluster.sh status   daemons, node state; exit 0 only when the node accepts jobs
#   tests/slurm/cluster.sh stop     cancel the test cluster's jobs, stop the daemons this script started,
#                                   remove the configuration it wrote
#
# Needs root on Debian/Ubuntu (apt-get). Every step is bounded by a timeout and says
# what it does; `start` and `stop` are idempotent (a second `start` only checks).
#
# Accounting: this cluster runs slurmdbd on a private MariaDB, as real clusters do.
# profiles/slurm asks squeue for job states (sacct's "CANCELLED by <uid>" after a
# scancel is not recognised by plugin 2.8.0, and Snakemake would wait forever), but
# sacct still matters: the plugin falls back to it when MinJobAge < 3 x
# init-seconds-before-status-checks, and without accounting storage sacct fails and
# Snakemake polls forever (ignoring SIGTERM); the tests read the finished jobs'
# history from it (one CANCELLED then one COMPLETED job for the scancel drill), which
# squeue forgets after MinJobAge. The price is about 10 s of install and 1 s of start.
#
# Why /etc/slurm/slurm.conf and not a private SLURM_CONF: the plugin's jobstep
# executor strips every SLURM_* variable before its inner srun, so a job would not
# find a config anywhere but at the built-in path. A slurm.conf this script did
# not write is kept as slurm.conf.hpsweep-backup before it is replaced. `stop` removes the
# files it wrote (and puts such a backup back): a slurm.conf naming a controller that no
# longer answers makes every scontrol wait ~10 s, and the SLURM executor plugin runs
# `scontrol show config` each time Snakemake starts, whatever the profile.
#
# Environment (all optional):
#   HPSWEEP_SLURM_DIR        scratch dir: state, logs, pid files, MariaDB data [/var/tmp/hpsweep-slurm]
#   HPSWEEP_SLURM_PARTITION  name of the one (default) partition [hpsweep]
#   HPSWEEP_SLURM_DB_PORT    TCP port of the private MariaDB on 127.0.0.1 [3307]
#   HPSWEEP_SLURM_TIMEOUT    seconds to wait for each daemon / the idle node [60]
set -euo pipefail

SCRATCH=${HPSWEEP_SLURM_DIR:-/var/tmp/hpsweep-slurm}
PARTITION=${HPSWEEP_SLURM_PARTITION:-hpsweep}
DB_PORT=${HPSWEEP_SLURM_DB_PORT:-3307}
WAIT_S=${HPSWEEP_SLURM_TIMEOUT:-60}
CLUSTER=hpsweep
HOST=$(hostname -s)
CONF_DIR=/etc/slurm
MARK="# Written by hpsweep tests/slurm/cluster.sh: a single-node test cluster."
RUN=$SCRATCH/run      # pid files of the daemons this script started, sockets
LOG=$SCRATCH/log
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
# A password only this private, 127.0.0.1-only database sees.
DB_PASS=hpsweep-test

T0=$(date +%s%N)
say() {
  local ds=$(( ($(date +%s%N) - T0) / 100000000 ))
  printf '[cluster.sh %3d.%ds] %s\n' $((ds / 10)) $((ds % 10)) "$*"
}
die() { say "ERROR: $*" >&2; exit 1; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s until it succeeds.
wait_for() {
  local limit=$1 what=$2; shift 2
  local end=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    (( $(date +%s) < end )) || return 1
    sleep 0.2
  done
  say "$what"
}

# alive NAME: the daemon NAME started by this script is running (pid file + process name).
alive() {
  local pidfile=$RUN/$1.pid pid
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  running "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]]
}

# running PID: the process exists and is not a zombie waiting for its parent to reap it.
running() { [[ -r /proc/$1/stat ]] && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

tail_log() { [[ -f $1 ]] && { echo "--- last lines of $1:" >&2; tail -n 15 "$1" >&2; }; return 0; }

# -- install ---------------------------------------------------------------------------
install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ $(id -u) == 0 ]] || die "needs root to install ${missing[*]} (apt-get)"
  command -v apt-get >/dev/null || die "no apt-get: install ${missing[*]} by hand"
  say "installing ${missing[*]} (apt-get, at most 300 s)"
  timeout 120 apt-get update -qq >"$LOG/apt.log" 2>&1 || { tail_log "$LOG/apt.log"; die "apt-get update failed"; }
  # The packages' own service start is refused in containers (policy-rc.d): we start
  # the daemons ourselves below.
  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >>"$LOG/apt.log" 2>&1 || { tail_log "$LOG/apt.log"; die "apt-get install failed"; }
  say "installed"
}

# -- configuration ---------------------------------------------------------------------
# write_if_changed PATH MODE: stdin -> PATH when different; returns 0 when it changed.
write_if_changed() {
  local path=$1 mode=$2 tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if [[ -f $path ]] && cmp -s "$tmp" "$path"; then rm -f "$tmp"; return 1; fi
  if [[ -f $path ]] && ! grep -qxF "$MARK" "$path" && [[ ! -e $path.hpsweep-backup ]]; then
    cp -p "$path" "$path.hpsweep-backup"
    say "kept the existing $path as $path.hpsweep-backup"
  fi
  install -m "$mode" -o root -g root "$tmp" "$path"
  rm -f "$tmp"
  return 0
}

write_configs() {
  local hw cpus mem changed=1
  # What this machine has, in slurm.conf terms (RealMemory must not exceed it).
  hw=$(timeout 20 slurmd -C | head -n 1) || die "slurmd -C failed"
  cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
  mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
  [[ -n $cpus && -n $mem ]] || die "cannot parse slurmd -C: $hw"
  mkdir -p "$CONF_DIR"

  write_if_changed "$CONF_DIR/slurm.conf" 644 <<EOF && changed=0
$MARK
# Scratch state lives in $SCRATCH; \`cluster.sh stop\` stops the daemons.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$SCRATCH/state/ctld
SlurmdSpoolDir=$SCRATCH/state/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
# Containers: no cgroup hierarchy to manage; linuxproc tracks a job's processes.
ProctrackType=proctrack/linuxproc
# task/none makes srun warn about cpu binding.
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job that asks no memory takes the whole node (one job at a time).
DefMemPerCPU=500
MailProg=/bin/true
# A node that went DOWN comes back by itself when its slurmd registers again.
ReturnToService=2
# Finished jobs stay visible to squeue/scontrol for 5 minutes (sacct keeps them for good).
MinJobAge=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
# Keep the job comment (Snakemake's "rule_<rule>_wildcards_<...>") for \`sacct -o Comment\`.
AccountingStoreFlags=job_comment
# Record GPUs too, so \`sacct -o AllocTRES\` shows which jobs got one (gres/gpu=1).
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
# One fake GPU (gres.conf), so GPU jobs (--gpus=1) are scheduled as on a real cluster.
GresTypes=gpu
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

  # A GPU without File= is dropped and the node goes INVAL; /dev/null stands in.
  write_if_changed "$CONF_DIR/gres.conf" 644 <<EOF && changed=0
$MARK
AutoDetect=off
NodeName=$HOST Name=gpu File=/dev/null
EOF

  # slurmdbd refuses a config readable by others (it holds the DB password).
  write_if_changed "$CONF_DIR/slurmdbd.conf" 600 <<EOF && changed=0
$MARK
AuthType=auth/munge
DbdAddr=127.0.0.1
DbdHost=localhost
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  return $changed
}

# -- daemons ---------------------------------------------------------------------------
munge_works() { munge -n </dev/null | unmunge >/dev/null; }

start_munge() {
  if munge_works 2>/dev/null; then say "munged: already running"; return; fi
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge "$LOG/munge"
  [[ -s /etc/munge/munge.key ]] || {
    say "creating /etc/munge/munge.key"
    timeout 20 mungekey --create --force --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
  }
  timeout 20 runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid \
    --log-file="$LOG/munge/munged.log" || { tail_log "$LOG/munge/munged.log"; die "munged did not start"; }
  cp /run/munge/munged.pid "$RUN/munged.pid"
  wait_for "$WAIT_S" "munged: started" munge_works || die "munge does not answer"
}

MYRUN=$SCRATCH/mysql-run  # socket, pid and log of mariadbd (it runs as user mysql)
db() { timeout 20 mariadb --no-defaults --socket="$MYRUN/mysqld.sock" -u root "$@"; }

start_mariadb() {
  if alive mariadbd; then say "mariadbd: already running"; return; fi
  if [[ ! -d $SCRATCH/mysql/mysql ]]; then
    say "creating a private MariaDB in $SCRATCH/mysql"
    rm -rf "$SCRATCH/mysql"
    timeout 120 mariadb-install-db --no-defaults --user=mysql --datadir="$SCRATCH/mysql" \
      --auth-root-authentication-method=socket --skip-test-db >"$LOG/mariadb-install.log" 2>&1 \
      || { tail_log "$LOG/mariadb-install.log"; die "mariadb-install-db failed"; }
  fi
  chown -R mysql:mysql "$SCRATCH/mysql"
  install -d -o mysql -g mysql -m 0755 "$MYRUN"
  rm -f "$MYRUN/mariadbd.pid"
  # Only 127.0.0.1 on a private port: never clashes with a system MariaDB/MySQL.
  (setsid mariadbd --no-defaults --user=mysql --datadir="$SCRATCH/mysql" \
     --socket="$MYRUN/mysqld.sock" --pid-file="$MYRUN/mariadbd.pid" --bind-address=127.0.0.1 \
     --port="$DB_PORT" --log-error="$MYRUN/mariadbd.log" --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900 \
     </dev/null >/dev/null 2>&1 &)
  wait_for "$WAIT_S" "mariadbd: started (127.0.0.1:$DB_PORT)" db -e "SELECT 1" \
    || { tail_log "$MYRUN/mariadbd.log"; die "mariadbd did not start"; }
  cp "$MYRUN/mariadbd.pid" "$RUN/mariadbd.pid"
  db -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
         CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
         CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
         GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
         GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" || die "cannot create the slurm DB user"
}

start_slurmdbd() {
  if alive slurmdbd; then say "slurmdbd: already running"; return; fi
  timeout 30 slurmdbd || { tail_log "$LOG/slurmdbd.log"; die "slurmdbd did not start"; }
  wait_for "$WAIT_S" "slurmdbd: started" timeout 10 sacctmgr -n list cluster \
    || { tail_log "$LOG/slurmdbd.log"; die "slurmdbd does not answer"; }
  # Register the cluster before slurmctld first talks to slurmdbd.
  if [[ -z $(timeout 10 sacctmgr -n -P list cluster "$CLUSTER" format=cluster) ]]; then
    timeout 20 sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster failed"
    say "slurmdbd: registered cluster $CLUSTER"
  fi
}

start_slurmctld() {
  if alive slurmctld; then say "slurmctld: already running"; return; fi
  mkdir -p "$SCRATCH/state/ctld"
  timeout 30 slurmctld || { tail_log "$LOG/slurmctld.log"; die "slurmctld did not start"; }
  wait_for "$WAIT_S" "slurmctld: started" timeout 5 scontrol ping \
    || { tail_log "$LOG/slurmctld.log"; die "slurmctld does not answer (scontrol ping)"; }
}

start_slurmd() {
  if alive slurmd; then say "slurmd: already running"; return; fi
  mkdir -p "$SCRATCH/state/slurmd"
  timeout 30 slurmd || { tail_log "$LOG/slurmd.log"; die "slurmd did not start"; }
  say "slurmd: started"
}

node_state() { timeout 5 sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n 1; }
node_up() { [[ $(node_state) =~ ^(idle|mixed|allocated|completing)$ ]]; }

# stop_daemon NAME: TERM (then KILL after 15 s) the daemon this script started.
stop_daemon() {
  local name=$1 pid i
  if ! alive "$name"; then rm -f "$RUN/$name.pid"; return 0; fi
  pid=$(<"$RUN/$name.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do running "$pid" || break; sleep 0.1; done
  if running "$pid"; then kill -KILL "$pid" 2>/dev/null || true; say "$name: killed (pid $pid)"
  else say "$name: stopped (pid $pid)"; fi
  rm -f "$RUN/$name.pid"
}

cmd_start() {
  if [[ $(id -u) != 0 ]]; then
    node_up && { say "ready: node $HOST is $(node_state) (started by someone else)"; return 0; }
    die "needs root: it installs packages, writes $CONF_DIR and starts daemons"
  fi
  mkdir -p "$RUN" "$LOG" "$SCRATCH/state" || die "cannot create the scratch dir $SCRATCH"
  install_packages
  local restart=1
  write_configs && restart=0
  if [[ $restart == 0 ]] && { alive slurmctld || alive slurmd || alive slurmdbd; }; then
    say "configuration changed: restarting the SLURM daemons"
    stop_daemon slurmd; stop_daemon slurmctld; stop_daemon slurmdbd
  fi
  start_munge
  start_mariadb
  start_slurmdbd
  start_slurmctld
  start_slurmd
  if ! wait_for "$WAIT_S" "node $HOST accepts jobs" node_up; then
    # A node left DRAINED/DOWN by an earlier session: resume it once.
    timeout 10 scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
    wait_for 15 "node $HOST resumed" node_up || {
      timeout 5 sinfo -R >&2 || true; tail_log "$LOG/slurmd.log"; tail_log "$LOG/slurmctld.log"
      die "node $HOST is '$(node_state)', not idle"; }
  fi
  say "ready: node $HOST is $(node_state) in partition $PARTITION of cluster $CLUSTER (logs in $LOG)"
}

# remove_configs: delete the files write_configs wrote (marked), restoring any backup.
remove_configs() {
  local name path
  for name in slurm.conf gres.conf slurmdbd.conf; do
    path=$CONF_DIR/$name
    [[ -f $path ]] && grep -qxF "$MARK" "$path" || continue
    if [[ -e $path.hpsweep-backup ]]; then mv -f "$path.hpsweep-backup" "$path"; say "restored $path"
    else rm -f "$path"; say "removed $path"; fi
  done
}

cmd_stop() {
  if alive slurmctld; then
    # Jobs left by an interrupted test would otherwise linger as slurmstepd processes.
    local ids i
    ids=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
    # shellcheck disable=SC2086  # one job id a word
    [[ -n $ids ]] && { timeout 10 scancel $ids || true; say "cancelled jobs" $ids; }
    for ((i = 0; i < 50; i++)); do
      [[ -z $(timeout 5 squeue -h -o %i 2>/dev/null) ]] && break; sleep 0.2; done
  fi
  stop_daemon slurmd; stop_daemon slurmctld; stop_daemon slurmdbd; stop_daemon mariadbd
  stop_daemon munged
  remove_configs
  say "stopped (only the daemons this script started; state and logs stay in $SCRATCH)"
}

cmd_status() {
  local name rc=0
  for name in munged mariadbd slurmdbd slurmctld slurmd; do
    if alive "$name"; then echo "$name: running (pid $(<"$RUN/$name.pid"))"
    else echo "$name: not started by cluster.sh"; fi
  done
  if node_up; then timeout 5 sinfo || true
  else echo "node $HOST: '$(node_state || true)', not accepting jobs"; rc=1; fi
  return $rc
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
