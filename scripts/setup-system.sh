#!/usr/bin/env bash
# Install the Debian packages behind the fixture world's local servers, when missing.
#   nginx-light              HTTP server with Range / multi-range (tessellum.testing.servers.HttpServer)
#   postgresql-15-postgis-3  PostgreSQL + PostGIS for the pgstac STAC API
#   redis-server             shared result cache backend
#   cgi-mapserver            MapServer WCS 2.0.1 (mapserv CGI) for raster mode's WCS passthrough tests
#   gcc                      builds tessellum._kernels (optional: without it those paths run as numpy)
# Idempotent; a no-op when everything is present. Without root or apt, it says what is missing
# and exits 0: the tests that need a missing server skip with that reason.
set -u
need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1 || need+=(postgresql-15-postgis-3)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || need+=(redis-server)
command -v mapserv >/dev/null 2>&1 || [ -x /usr/lib/cgi-bin/mapserv ] || need+=(cgi-mapserver)
command -v gcc >/dev/null 2>&1 || command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-system: cannot install ${need[*]} (needs root and apt-get); dependent tests will skip" >&2
  exit 0
fi
echo "setup-system: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || echo "setup-system: apt-get update failed" >&2
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
  || echo "setup-system: apt-get install ${need[*]} failed; dependent tests will skip" >&2
# The Debian packages start system services we do not use: the tests run their own on ephemeral ports.
for svc in nginx redis-server postgresql; do
  (command -v service >/dev/null 2>&1 && service "$svc" stop >/dev/null 2>&1) || true
done
exit 0
