#!/usr/bin/env bash
# Start time and RSS at rest of the server, tsx (npm start) against compiled
# (npm run start:prod; run `npm run build` first): 5 starts each, time from
# spawn to the first /readyz 200, RSS 2 s later. Needs a migrated, seeded
# database: DATABASE_URL=postgresql://.../db bench/start-time.sh [port]
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:-4213}
: "${DATABASE_URL:?set DATABASE_URL to a migrated and seeded database}"
measure() {
  local label=$1; shift
  for run in 1 2 3 4 5; do
    t0=$(date +%s%N)
    PORT=$port MIGRATE_ON_START=false SEED_ON_START=false NODE_ENV=production GRAPHIQL=false LOG_LEVEL=warn \
      JWT_SECRET=bench-secret-0123456789abcdef0123456789abcdef "$@" >/dev/null 2>&1 &
    pid=$!
    until curl -sf "localhost:$port/readyz" >/dev/null; do sleep 0.02; done
    t1=$(date +%s%N)
    sleep 2
    rss=$(awk '/VmRSS/{print int($2/1024)}' "/proc/$pid/status")
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    echo "$label run$run ready_ms=$(( (t1 - t0) / 1000000 )) rss_mb=$rss"
  done
}
measure tsx node --max-old-space-size=224 --heap-growing-percent=50 --liftoff-only --import tsx src/server.ts
measure dist node --max-old-space-size=224 --heap-growing-percent=50 --liftoff-only dist/server.js
