#!/bin/bash
# Back up InfluxDB and the ticket database into one time-stamped folder, and
# delete the folders older than the retention. docs/deploy.md has the restore
# commands.
#
#   backup.sh            a host running the services (systemd: campus-backup.timer)
#   backup.sh --compose  the docker compose deployment (run from any folder)
#
# Settings (environment; systemd reads /etc/campus/backup.env):
#   BACKUP_DIR        where the folders go (default /var/lib/campus/backups;
#                     with --compose, deploy/backups, seen as /backups inside)
#   BACKUP_KEEP_DAYS  days to keep (default 14)
#   BACKUP_INFLUX     v1 (influxd backup -portable), v2 (influx backup) or none;
#                     default v2 when INFLUX_TOKEN is set, else v1
#   INFLUX_HOST       v2: the server (default http://127.0.0.1:8086)
#   INFLUX_TOKEN      v2: an operator or all-access token
#   INFLUX_BACKUP_HOST v1: the RPC address (default 127.0.0.1:8088)
#   CAMPUS_DB_URL     the ticket store: postgresql[+psycopg]://... or sqlite:///path
#                     (default sqlite:///var/lib/campus/campus.db)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
compose=false
if [ "${1:-}" = "--compose" ]; then
    compose=true
    shift
fi
if [ $# -gt 0 ]; then
    echo "usage: backup.sh [--compose]" >&2
    exit 2
fi

keep_days="${BACKUP_KEEP_DAYS:-14}"
case "$keep_days" in
    '' | *[!0-9]*)
        echo "backup: BACKUP_KEEP_DAYS must be a whole number of days, got '$keep_days'" >&2
        exit 2
        ;;
esac

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
if $compose; then
    root="${BACKUP_DIR:-$here/backups}"
else
    root="${BACKUP_DIR:-/var/lib/campus/backups}"
fi
out="$root/$stamp"
mkdir -p "$out"
chmod 0700 "$root" "$out"

dc() {
    docker compose --project-directory "$here" -f "$here/docker-compose.yml" "$@"
}

backup_influx() {
    local kind="${BACKUP_INFLUX:-}"
    if $compose; then
        # the influxdb service mounts deploy/backups at /backups
        dc exec -T influxdb influx backup "/backups/$stamp/influx"
        return
    fi
    if [ -z "$kind" ]; then
        if [ -n "${INFLUX_TOKEN:-}" ]; then kind=v2; else kind=v1; fi
    fi
    case "$kind" in
        v1) influxd backup -portable -host "${INFLUX_BACKUP_HOST:-127.0.0.1:8088}" "$out/influx" ;;
        v2)
            influx backup "$out/influx" --host "${INFLUX_HOST:-http://127.0.0.1:8086}" \
                --token "${INFLUX_TOKEN:?v2 backups need INFLUX_TOKEN}"
            ;;
        none) ;;
        *)
            echo "backup: BACKUP_INFLUX must be v1, v2 or none, got '$kind'" >&2
            return 2
            ;;
    esac
}

backup_tickets() {
    local url="${CAMPUS_DB_URL:-sqlite:////var/lib/campus/campus.db}"
    if $compose; then
        dc exec -T postgres pg_dump -Fc -U campus campus > "$out/tickets.dump"
        return
    fi
    case "$url" in
        postgresql*)
            # libpq does not know SQLAlchemy's driver suffix
            pg_dump -Fc -f "$out/tickets.dump" --dbname "postgresql://${url#*://}"
            ;;
        sqlite:///*)
            # a consistent copy even while the services write (SQLite's online backup)
            python3 - "${url#sqlite:///}" "$out/tickets.db" <<'PY'
import sqlite3, sys
src = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
with sqlite3.connect(sys.argv[2]) as dst:
    src.backup(dst)
PY
            ;;
        *)
            echo "backup: cannot back up CAMPUS_DB_URL '${url%%://*}://...'" >&2
            return 2
            ;;
    esac
}

backup_influx
backup_tickets
echo "backup: $out"

# retention: whole backup folders older than the limit
find "$root" -mindepth 1 -maxdepth 1 -type d -name '20*T*Z' -mtime "+$keep_days" \
    -exec rm -rf {} +
