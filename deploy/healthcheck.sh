#!/bin/sh
# Health of whichever campus service this container runs, read from PID 1's
# command line, so one image-wide HEALTHCHECK fits every service:
#   api            GET /healthz answers 200
#   ingest         its /metrics answers (`campus ingest --status`)
#   rules run      the broker confirmed its subscription ({var_dir}/run/rules.ready)
#   tickets serve  the ticket store answers (`campus tickets list`)
set -eu
cmd=" $(tr '\000' ' ' < /proc/1/cmdline)"
case "$cmd" in
  *"campus api "*)
    exec python -c "import sys, urllib.request as u; \
sys.exit(u.urlopen('http://127.0.0.1:${CAMPUS_API_PORT:-8000}/healthz', timeout=5).status != 200)" ;;
  *"campus ingest "*)
    exec campus ingest --status > /dev/null ;;
  *"campus rules run "*)
    exec test -f "${CAMPUS_VAR_DIR:-/var/lib/campus}/run/rules.ready" ;;
  *"campus tickets serve "*)
    exec campus tickets list --limit 1 > /dev/null ;;
  *)
    echo "no health check for:$cmd" >&2
    exit 0 ;;
esac
