#!/usr/bin/env bash
# Fetch the real HD-sEMG + force test recording used by myodiff's calibration and tests.
#
# The file `otb_testfile.mat` ships as test data inside the Python package openhdemg
# (https://github.com/GiacomoValliPhD/openhdemg, GPL-3.0), so it is not committed here.
# This script downloads openhdemg 0.1.2 from PyPI with pip (no dependencies, nothing installed),
# extracts that one member with python3's zipfile module, verifies its sha256 and places it in
# calibration/data/ (git-ignored). Idempotent: a present file with the right hash is kept.
#
# Usage: calibration/fetch-data.sh [DEST_DIR]    (default: $MYODIFF_DATA_DIR or calibration/data)
set -euo pipefail

SHA256="060bca2886c1393e74ad69b7f4af1fa8e7a271e359fb247768d73f8daa0fc84e"
MEMBER="openhdemg/library/decomposed_test_files/otb_testfile.mat"
NAME="otb_testfile.mat"
PACKAGE="openhdemg==0.1.2"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:-${MYODIFF_DATA_DIR:-$here/data}}"
target="$dest/$NAME"

sha_of() {
    python3 -c 'import hashlib,sys; h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"
}

command -v python3 >/dev/null || { echo "fetch-data.sh: python3 is required" >&2; exit 1; }

if [[ -f "$target" ]]; then
    if [[ "$(sha_of "$target")" == "$SHA256" ]]; then
        echo "fetch-data.sh: $target present, sha256 OK"
        exit 0
    fi
    echo "fetch-data.sh: $target has a wrong sha256; fetching it again" >&2
fi

mkdir -p "$dest"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "fetch-data.sh: downloading $PACKAGE from PyPI ..."
python3 -m pip download --no-deps --disable-pip-version-check --quiet "$PACKAGE" -d "$tmp"

shopt -s nullglob
archives=("$tmp"/openhdemg-0.1.2*)
if [[ ${#archives[@]} -ne 1 ]]; then
    echo "fetch-data.sh: expected one downloaded archive in $tmp, found ${#archives[@]}" >&2
    exit 1
fi

python3 - "${archives[0]}" "$MEMBER" "$tmp/$NAME" <<'PY'
import shutil, sys, tarfile, zipfile
archive, member, out = sys.argv[1:4]
if zipfile.is_zipfile(archive):
    with zipfile.ZipFile(archive) as z, z.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
else:  # an sdist: the member lies under openhdemg-0.1.2/
    with tarfile.open(archive) as t:
        m = next(m for m in t.getmembers() if m.name.endswith("/" + member) or m.name == member)
        with t.extractfile(m) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
PY

got="$(sha_of "$tmp/$NAME")"
if [[ "$got" != "$SHA256" ]]; then
    echo "fetch-data.sh: sha256 mismatch for $NAME: got $got, expected $SHA256" >&2
    exit 1
fi
mv "$tmp/$NAME" "$target.part"
mv "$target.part" "$target"
echo "fetch-data.sh: wrote $target (sha256 OK). Data: openhdemg test file, GPL-3.0."
