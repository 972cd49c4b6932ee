#!/bin/sh
# kagent, single-file build: this POSIX sh stub and, after it, a gzip'd tar of kagent (a
# PyInstaller one-folder build: its own Python and every dependency). The first run unpacks it
# into a cache folder named after the payload's hash (as k3s does with its data dir); later
# runs exec the cached kagent at once. Cache: $KAGENT_BUNDLE_DIR, else /var/cache/kagent as
# root, else ${XDG_CACHE_HOME:-$HOME/.cache}/kagent; it must be ours and not writable by others.
set -eu
self=$(readlink -f "$0")
id=@BUNDLE_ID@
if [ -n "${KAGENT_BUNDLE_DIR:-}" ]; then base=$KAGENT_BUNDLE_DIR
elif [ "$(id -u)" = 0 ]; then base=/var/cache/kagent
else base=${XDG_CACHE_HOME:-$HOME/.cache}/kagent
fi
die() { echo "error: kagent bundle $base: $1" >&2; echo "hint: $2" >&2; exit 4; }
[ -d "$base" ] || mkdir -p -m 0700 "$base" || die "cannot be created" "set KAGENT_BUNDLE_DIR to a writable folder"
[ ! -L "$base" ] && [ "$(stat -c %u "$base")" = "$(id -u)" ] || die "is not a folder owned by this user" "remove it or set KAGENT_BUNDLE_DIR"
case $(stat -c %A "$base") in ?????w*|????????w*) die "is writable by other users" "chmod go-w $base";; esac
dir=$base/$id
if [ ! -x "$dir/kagent" ]; then
    tmp=$(mktemp -d "$base/.$id.XXXXXX")
    if ! tail -n +@SKIP@ "$self" | tar -xzf - -C "$tmp"; then
        rm -rf "$tmp"
        die "unpacking $self failed" "check the free space in $base, or download kagent again"
    fi
    mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"  # another first run won the race: use its copy
fi
KAGENT_SELF=$self exec "$dir/kagent" "$@"
exit 4
