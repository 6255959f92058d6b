#!/usr/bin/env bash
# Fails when an include runs uphill or a foreign library leaks out of its adapter folder
# (shared/DESIGN.md "Components"):
#   common <- store, pki, pdf <- reading <- dicom, http <- server (the app); viewer uses common only;
#   dicom and http never include each other;
#   sqlite3.h only in server/store/, DCMTK's network and TLS headers only in server/dicom/ (and
#   samples/, whose tools play member PACS),
#   Boost (Asio/Beast) only in server/http/ and viewer/;
#   Pango and Cairo (and their GLib) only in server/pdf/.
# Usage: check_includes.sh [SOURCE_ROOT]; prints each violation as file:line.
set -uo pipefail
root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root" || exit 2

rank() {  # folder -> rank; folders of one rank may not include each other
  case $1 in
    common) echo 0 ;;
    server/store | server/pki | server/pdf) echo 1 ;;
    server/reading) echo 2 ;;
    server/dicom | server/http) echo 3 ;;
    server) echo 4 ;;
    viewer | samples) echo 5 ;;
    *) echo -1 ;;
  esac
}

violations=0
fail() {
  echo "$1: $2"
  violations=$((violations + 1))
}

while IFS= read -r file; do
  dir=$(dirname "$file")
  here=$(rank "$dir")
  [ "$here" -ge 0 ] || continue
  while IFS=: read -r line text; do
    target=$(sed -n 's/^[[:space:]]*#include[[:space:]]*"\([^"]*\)".*/\1/p' <<<"$text")
    tdir=$(dirname "${target:-.}")
    there=$(rank "$tdir")
    if [ -n "$target" ] && [ "$there" -ge 0 ]; then
      if [ "$tdir" != "$dir" ]; then
        if [ "$there" -ge "$here" ]; then
          fail "$file:$line" "includes $target: $tdir is not below $dir"
        elif [ "$dir" = viewer ] && [ "$tdir" != common ]; then
          fail "$file:$line" "includes $target: the viewer uses common/ only"
        elif [ "$dir" = samples ] && [ "$tdir" != common ]; then
          fail "$file:$line" "includes $target: samples use common/ only"
        fi
      fi
    fi
    case $text in
      *'"server/store/sqlite.h"'* | *'"server/store/schema.h"'* | *'"server/store/task_sql.h"'* | *'"server/store/wal_vfs.h"'*)
        [ "$dir" = server/store ] || fail "$file:$line" "store/'s SQLite wrappers are private to server/store" ;;
      *"<sqlite3.h>"*) [ "$dir" = server/store ] || fail "$file:$line" "sqlite3.h outside server/store" ;;
      *"dcmtk/dcmnet/"* | *"dcmtk/dcmtls/"*)
        # samples/ plays a member PACS (the storage commitment requester), not part of the server.
        [ "$dir" = server/dicom ] || [ "$dir" = samples ] ||
          fail "$file:$line" "DCMTK network headers outside server/dicom" ;;
      *"<boost/"*) [ "$dir" = server/http ] || [ "$dir" = viewer ] || fail "$file:$line" "Boost outside server/http and viewer" ;;
      *"<pango/"* | *"<cairo"* | *"<glib"*) [ "$dir" = server/pdf ] || fail "$file:$line" "Pango/Cairo outside server/pdf" ;;
    esac
  done < <(grep -n '^[[:space:]]*#include' "$file")
done < <(find common server viewer samples -name '*.h' -o -name '*.cc' | sort)

if [ "$violations" -gt 0 ]; then
  echo "$violations include(s) against the layering" >&2
  exit 1
fi
echo "includes run downhill: common <- store, pki, pdf <- reading <- dicom, http <- server"
