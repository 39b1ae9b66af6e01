#!/bin/sh
# Back up a single-host luatos-fota (SQLite + local package directory) while it runs.
#   deploy/backup.sh /var/lib/luatos-fota /srv/backup/luatos-fota
# Makes DEST/<UTC time>/fota.db (+ admin_token) and adds new packages to DEST/blobs/.
# Order matters: the database first, then the packages. A release row is committed only after
# its package is durable, so every package the snapshot references is already on disk when
# the copy of blobs/ starts. Packages are content-addressed and never change: copying only the
# new ones is a complete backup. Restore: copy <time>/fota.db and blobs/ into an empty DATA.
set -eu
if [ $# -ne 2 ]; then
    echo "usage: $0 DATA_DIR DEST_DIR" >&2
    exit 2
fi
data=$1
dest=$2
if [ ! -f "$data/fota.db" ]; then
    echo "error: $data/fota.db not found (PostgreSQL: back up with pg_dump instead)" >&2
    exit 3
fi
snap="$dest/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$snap" "$dest/blobs"
# SQLite's online backup API: a consistent copy while the server writes (WAL mode).
python3 - "$data/fota.db" "$snap/fota.db" <<'PY'
import sqlite3, sys
src = sqlite3.connect(sys.argv[1], timeout=30)
dst = sqlite3.connect(sys.argv[2])
src.backup(dst)
ok = dst.execute("PRAGMA integrity_check").fetchone()[0]
dst.close()
src.close()
if ok != "ok":
    sys.exit(f"backup of {sys.argv[1]} failed its integrity check: {ok}")
PY
if [ -f "$data/admin_token" ]; then
    cp -p "$data/admin_token" "$snap/"
fi
copied=0
for dir in "$data"/blobs/??; do
    [ -d "$dir" ] || continue
    name=$(basename "$dir")
    mkdir -p "$dest/blobs/$name"
    for blob in "$dir"/*; do
        [ -f "$blob" ] || continue
        target="$dest/blobs/$name/$(basename "$blob")"
        if [ ! -f "$target" ]; then
            cp -p "$blob" "$target.part" && mv "$target.part" "$target"
            copied=$((copied + 1))
        fi
    done
done
echo "backup $snap: database copied, $copied new package(s) in $dest/blobs"
