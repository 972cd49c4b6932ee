#!/usr/bin/env bash
# Build kagent's distributables into OUT (default dist/):
#   kagent-<v>.tar.gz            the sdist
#   kagent-<v>-py3-none-any.whl  the wheel, built from that sdist
#   kagent                       one self-contained executable (a sh stub + PyInstaller bundle): the
#                                whole agent with its own Python and every dependency; runs on
#                                a Debian host with no Python packages installed
# The build tools live in their own venv (KAGENT_BUILD_VENV, default build/venv) into which the
# wheel itself is installed, so the single file bundles exactly what the wheel would install.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-dist}")
venv=$(realpath -m "${KAGENT_BUILD_VENV:-build/venv}")
work=$(realpath -m build/pyinstaller)
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
mkdir -p "$out" build
log=$(realpath -m build/build.log)
: >"$log"
quiet() { "$@" >>"$log" 2>&1 || { tail -40 "$log" >&2; echo "error: packaging: '$*' failed (log: $log)" >&2; exit 1; }; }
quiet "$venv/bin/python" -m pip install -q --disable-pip-version-check "build>=1.0" "pyinstaller>=6.10,<7" \
    "setuptools>=77" wheel

rm -rf build/lib build/bdist.*  # setuptools' staging: a stale module there would ship in the wheel
rm -f "$out/kagent" "$out"/kagent-*.whl "$out"/kagent-*.tar.gz
# sdist, then the wheel from the sdist (so the sdist is proven complete); the build tools are
# those of the build venv (no isolated env per build: faster, and the same every time)
quiet "$venv/bin/python" -m build --no-isolation --outdir "$out" .
quiet "$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall "$out"/kagent-*.whl

# The single file is packaging/stub.sh followed by a tar.gz of a PyInstaller one-folder build;
# the stub unpacks it once into a cache named after its hash and execs it (see docs/design.md).
# --collect-submodules kagent: every command module (the CLI imports them lazily by name) and,
# through them, every library they import; --collect-data kagent: the service templates
# (kagent/service/units/). The work dir is kept between builds (PyInstaller re-analyses what
# changed).
quiet "$venv/bin/pyinstaller" --noconfirm --log-level WARN --onedir --name kagent --strip \
    --collect-submodules kagent --collect-data kagent --copy-metadata kagent \
    --distpath "$work/dist" --workpath "$work" --specpath "$work" \
    packaging/kagent_entry.py
payload="$work/payload.tar.gz"
tar -C "$work/dist/kagent" --owner=0 --group=0 --numeric-owner -czf "$payload" .
id=$(sha256sum "$payload" | cut -c1-16)
skip=$(( $(wc -l < packaging/stub.sh) + 1 ))
sed -e "s/@BUNDLE_ID@/$id/" -e "s/@SKIP@/$skip/" packaging/stub.sh > "$out/.kagent.tmp"
cat "$payload" >> "$out/.kagent.tmp"
chmod 0755 "$out/.kagent.tmp"
mv -f "$out/.kagent.tmp" "$out/kagent"
KAGENT_BUNDLE_DIR="$work/bundle-check" "$out/kagent" version >/dev/null
rm -rf "$work/bundle-check"
ls -l "$out/kagent" "$out"/kagent-*
