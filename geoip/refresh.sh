#!/usr/bin/env bash
# Refreshes the IP-to-country database and the country reference coordinates in this directory
# from the npm registry, and records what was taken in PROVENANCE.
#
#   geoip/refresh.sh            # newest published versions
#   MMDB_VERSION=2.3.2026061719 COUNTRY_JSON_VERSION=2.3.0 geoip/refresh.sh
#
# Needs npm, tar, python3 and sha256sum. A running origin notices the new database file by
# itself (it is checked for changes and reloaded); the coordinates table is compiled into the
# binary, so a changed table needs a rebuild.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

mmdb_pkg="@ip-location-db/geo-whois-asn-country-mmdb@${MMDB_VERSION:-latest}"
coords_pkg="country-json@${COUNTRY_JSON_VERSION:-latest}"
npm pack --silent "$mmdb_pkg" >mmdb.name
npm pack --silent "$coords_pkg" >coords.name
mkdir mmdb coords
tar xzf "$(cat mmdb.name)" -C mmdb
tar xzf "$(cat coords.name)" -C coords

# Write to a temporary name and rename, so a running origin never maps a half-written file.
cp mmdb/package/geo-whois-asn-country.mmdb "$here/.geo-whois-asn-country.mmdb.new"
mv "$here/.geo-whois-asn-country.mmdb.new" "$here/geo-whois-asn-country.mmdb"
cp mmdb/package/NRO_LICENSE "$here/LICENSE.geo-whois-asn-country"
cp coords/package/LICENSE "$here/LICENSE.country-json"

python3 - coords/package/src "$here/country-coordinates.csv" <<'PY'
# One reference point per ISO 3166-1 alpha-2 code: the middle of country-json's bounding box
# (across the antimeridian where the box crosses it). Codes the package has no box for get the
# coordinates of their capital (OVERRIDES, written here; public facts).
import csv, json, sys
src, out = sys.argv[1], sys.argv[2]
boxes = {b["country"]: b for b in json.load(open(f"{src}/country-by-geo-coordinates.json"))}
codes = {c["country"]: c["abbreviation"] for c in json.load(open(f"{src}/country-by-abbreviation.json"))}
OVERRIDES = {
    "CC": (-12.19, 96.83), "CD": (-4.32, 15.31), "CG": (-4.27, 15.28), "FJ": (-18.14, 178.44),
    "FM": (6.92, 158.16), "KZ": (51.17, 71.45), "LK": (6.93, 79.86), "LY": (32.89, 13.19),
    "MM": (19.76, 96.08), "PN": (-25.07, -130.10), "RS": (44.82, 20.46), "RU": (55.76, 37.62),
    "UM": (19.28, 166.65), "VA": (41.90, 12.45), "VG": (18.43, -64.62), "VI": (18.34, -64.93),
    "XK": (42.66, 21.17), "SS": (4.85, 31.58), "CW": (12.11, -68.93), "SX": (18.03, -63.05),
    "BQ": (12.15, -68.27), "GB": (54.0, -2.5),
}
rows = {}
for name, code in codes.items():
    box = boxes.get(name)
    if code is None or box is None:
        continue
    try:
        north, south, west, east = (float(box[k]) for k in ("north", "south", "west", "east"))
    except (TypeError, ValueError):  # no box, or a part of it missing
        continue
    if west > east:
        east += 360
    lon = (west + east) / 2
    if lon > 180:
        lon -= 360
    rows[code] = ((north + south) / 2, lon)
rows.update(OVERRIDES)
with open(out, "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["country_code", "latitude", "longitude"])
    for code in sorted(rows):
        lat, lon = rows[code]
        w.writerow([code, f"{lat:.4f}", f"{lon:.4f}"])
print(f"{len(rows)} countries", file=sys.stderr)
PY

{
  echo "# What this directory was made from (written by refresh.sh on $(date -u +%Y-%m-%d))"
  echo
  echo "geo-whois-asn-country.mmdb  npm $(cd mmdb/package && node -p 'require("./package.json").name + "@" + require("./package.json").version')"
  echo "  package licence: CC0-1.0; its data: GeoFeed + RIR WHOIS + ASN data, CC BY 4.0 by the NRO (nro.net), see LICENSE.geo-whois-asn-country"
  echo "  sha256 $(sha256sum "$here/geo-whois-asn-country.mmdb" | cut -d' ' -f1)"
  echo "country-coordinates.csv     npm $(cd coords/package && node -p 'require("./package.json").name + "@" + require("./package.json").version') (MIT, see LICENSE.country-json)"
  echo "  bounding-box centres of src/country-by-geo-coordinates.json; capitals for the codes it lacks (see refresh.sh)"
  echo "  sha256 $(sha256sum "$here/country-coordinates.csv" | cut -d' ' -f1)"
} >"$here/PROVENANCE"
cat "$here/PROVENANCE"
