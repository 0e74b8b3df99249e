#!/bin/bash
# InfluxDB 2 for the campus platform, run once by the influxdb image at its first
# setup (/docker-entrypoint-initdb.d). The image has already made the org `campus`
# and the bucket of raw readings, named like the database (DOCKER_INFLUXDB_INIT_BUCKET,
# kept DOCKER_INFLUXDB_INIT_RETENTION), and exported INFLUX_HOST, INFLUX_CONFIGS_PATH
# (admin token), DOCKER_INFLUXDB_INIT_ORG and DOCKER_INFLUXDB_INIT_BUCKET_ID.
#
# The platform speaks InfluxQL over the v1 API (DESIGN.md section 4), so this maps
# the database and retention policies it knows onto buckets:
#   campus/autogen (default) -> campus         raw readings
#   campus/hourly            -> campus_hourly  hourly rollups
#   campus/daily             -> campus_daily   daily rollups
#   campus/meta              -> campus_meta    building positions, rollup choice
# makes the v1 users the services log in as (least privilege), and the two tasks
# that roll raw readings up (InfluxDB 2 has no continuous queries).
set -euo pipefail

org="${DOCKER_INFLUXDB_INIT_ORG:-campus}"
db="${CAMPUS_INFLUX_DB:-campus}"
raw="${DOCKER_INFLUXDB_INIT_BUCKET:-$db}"
raw_id="${DOCKER_INFLUXDB_INIT_BUCKET_ID:?the influxdb image sets this at setup}"

# The id of bucket $1, created with retention $2 (and any further flags) when it
# does not exist yet.
bucket_id() {
    local name="$1" retention="$2" id
    shift 2
    id="$(influx bucket list --org "$org" --name "$name" --hide-headers 2>/dev/null | awk '{print $1}' || true)"
    if [ -z "$id" ]; then
        id="$(influx bucket create --org "$org" --name "$name" --retention "$retention" "$@" \
            --hide-headers | awk '{print $1}')"
    fi
    echo "$id"
}

hourly_id="$(bucket_id "${db}_hourly" "${INFLUX_ROLLUP_RETENTION:-0}")"
daily_id="$(bucket_id "${db}_daily" "${INFLUX_ROLLUP_RETENTION:-0}")"
# reference rows span a century (campus.rollups.raw_age_points): one shard, not thousands
meta_id="$(bucket_id "${db}_meta" 0 --shard-group-duration 5200w)"

# A DBRP mapping from database $db, retention policy $1, to bucket id $2.
dbrp() {
    local rp="$1" bucket="$2"
    shift 2
    if ! influx v1 dbrp list --org "$org" --db "$db" --rp "$rp" --hide-headers 2>/dev/null |
        grep -q .; then
        influx v1 dbrp create --org "$org" --db "$db" --rp "$rp" --bucket-id "$bucket" "$@"
    fi
}

dbrp autogen "$raw_id" --default
dbrp hourly "$hourly_id"
dbrp daily "$daily_id"
dbrp meta "$meta_id"

# v1 users: ingest and tickets write readings and ticket events, Grafana and the
# API read everything.
influx v1 auth create --org "$org" --username ingest \
    --password "${INFLUX_INGEST_PASSWORD:?}" \
    --write-bucket "$raw_id" --read-bucket "$raw_id" --read-bucket "$meta_id"
influx v1 auth create --org "$org" --username tickets \
    --password "${INFLUX_TICKETS_PASSWORD:?}" \
    --write-bucket "$raw_id" --read-bucket "$raw_id"
for user in grafana api; do
    var="INFLUX_$(echo "$user" | tr '[:lower:]' '[:upper:]')_PASSWORD"
    influx v1 auth create --org "$org" --username "$user" --password "${!var:?}" \
        --read-bucket "$raw_id" --read-bucket "$hourly_id" \
        --read-bucket "$daily_id" --read-bucket "$meta_id"
done

# Rollups, as the continuous queries of `campus db init` do on InfluxDB 1.x: per
# window, each gauge's mean under its own name plus <metric>_min and
# <metric>_max, each counter's last value under its own name, same measurement
# and tags, timestamped at the window's start.
counters='r._field == "energy_kwh" or r._field == "volume_m3"'
task_file="$(mktemp)"
trap 'rm -f "$task_file"' EXIT

cat > "$task_file" <<FLUX
import "types"

option task = {name: "campus-rollup-hourly", every: 1h, offset: 5m}

data = from(bucket: "${raw}")
    |> range(start: -task.every)
    |> filter(fn: (r) => r._measurement != "device_status" and r._measurement != "tickets")
    |> filter(fn: (r) => types.isType(v: r._value, type: "float"))
gauges = data |> filter(fn: (r) => not (${counters}))
roll = (tables=<-, fn, suffix) => tables
    |> aggregateWindow(every: 1h, fn: fn, timeSrc: "_start", createEmpty: false)
    |> map(fn: (r) => ({r with _field: r._field + suffix}))

union(tables: [
    data |> filter(fn: (r) => ${counters}) |> roll(fn: last, suffix: ""),
    gauges |> roll(fn: mean, suffix: ""),
    gauges |> roll(fn: min, suffix: "_min"),
    gauges |> roll(fn: max, suffix: "_max"),
])
    |> to(bucket: "${db}_hourly", org: "${org}")
FLUX
influx task create --org "$org" --file "$task_file"

# Daily windows start at the campus's local midnight (standard time), as the
# continuous queries' GROUP BY time(1d, <offset>): INFLUX_ROLLUP_DAY_OFFSET is
# how long after UTC midnight that is (16h for UTC+8). Each run rolls up the last
# two days; a day the range cuts at its start is left alone, and the day still
# under way is rewritten whole by the next run.
cat > "$task_file" <<FLUX
option task = {name: "campus-rollup-daily", every: 1d, offset: 30m}

day_offset = ${INFLUX_ROLLUP_DAY_OFFSET:-0h}
data = from(bucket: "${db}_hourly") |> range(start: -2d)
roll = (tables=<-, fn) => tables
    |> aggregateWindow(every: 1d, offset: day_offset, fn: fn, timeSrc: "_start", createEmpty: false)
    |> filter(fn: (r) => (int(v: r._time) - int(v: day_offset)) % 86400000000000 == 0)

union(tables: [
    data |> filter(fn: (r) => r._field =~ /_min\$/) |> roll(fn: min),
    data |> filter(fn: (r) => r._field =~ /_max\$/) |> roll(fn: max),
    data |> filter(fn: (r) => ${counters}) |> roll(fn: last),
    data
        |> filter(fn: (r) => r._field !~ /_(min|max)\$/ and not (${counters}))
        |> roll(fn: mean),
])
    |> to(bucket: "${db}_daily", org: "${org}")
FLUX
influx task create --org "$org" --file "$task_file"

echo "campus: buckets, DBRP mappings, v1 users and rollup tasks ready"
