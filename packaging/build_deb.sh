#!/usr/bin/env bash
# Build dist/twinplan_<version>_amd64.deb (called by `make package`).
#
# Layout of the package:
#   /opt/twinplan/venv        private venv (--system-site-packages: Debian's dolfinx)
#                             holding TwinPlan's wheel and the Python deps Debian lacks
#   /usr/bin/twinplan(-gui)   wrappers running the venv's Python
#   /usr/share/applications, icons, mime/packages: desktop entry, icon, .twin MIME type
# The venv gets the exact versions of the development venv (packaging/requirements.py)
# from wheels kept in build/wheelhouse, so no build step compiles or resolves.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEV_PY=${DEV_PY:-$ROOT/.venv/bin/python}
OUT=${OUT:-$ROOT/dist}
PREFIX=/opt/twinplan
COMPRESS=${COMPRESS:-zstd}
WHEELHOUSE=${WHEELHOUSE:-$ROOT/build/wheelhouse}

version=$("$DEV_PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
pkg="twinplan_${version}_amd64"
build="$ROOT/build/deb"
stage="$build/$pkg"
venv="$stage$PREFIX/venv"
t0=$(date +%s)

rm -rf "$build/wheel" "$stage/DEBIAN" "$stage/usr"
mkdir -p "$build/wheel" "$OUT"

echo "package: building the TwinPlan wheel"
"$DEV_PY" -m pip wheel -q --no-deps -w "$build/wheel" . >/dev/null
wheel=$(ls "$build"/wheel/twinplan-"$version"-*.whl)

"$DEV_PY" packaging/requirements.py > "$build/requirements.txt"
deps_key=$( (cat "$build/requirements.txt"; /usr/bin/python3 --version) | sha256sum | cut -c1-16)
pip_venv() {
    "$DEV_PY" -m pip --python "$venv/bin/python" install -q --no-warn-script-location --no-index "$@"
}
# The dependencies take minutes to unpack and byte-compile: the staged venv is kept
# between builds and only rebuilt when the pinned requirements change.
if [ -x "$venv/bin/python" ] && [ "$(cat "$build/deps.key" 2>/dev/null)" = "$deps_key" ]; then
    echo "package: reusing the staged venv (requirements unchanged)"
    pip_venv --no-deps --force-reinstall "$wheel"
else
    echo "package: creating the private venv"
    rm -rf "$stage" "$build/deps.key"
    /usr/bin/python3 -m venv --system-site-packages --without-pip "$venv"
    # --no-deps with the full pinned closure: nothing is resolved against whatever
    # the build machine has installed; Debian's dolfinx stack comes from the system.
    install_deps() {
        pip_venv --ignore-installed --find-links "$WHEELHOUSE" --no-deps -r "$build/requirements.txt" "$wheel"
    }
    # Wheels are kept in build/wheelhouse between builds: only the first build downloads.
    mkdir -p "$WHEELHOUSE"
    if ! install_deps 2>/dev/null; then
        echo "package: filling $WHEELHOUSE (the first build downloads the wheels)"
        "$DEV_PY" -m pip wheel -q --no-deps -w "$WHEELHOUSE" -r "$build/requirements.txt" 2>&1 \
            | grep -v "^WARNING: Location" >&2 || true
        install_deps
    fi
    echo "$deps_key" > "$build/deps.key"
fi
mkdir -p "$stage/DEBIAN" "$stage/usr/bin"

# Not needed at run time, and every file slows dpkg's install and removal: type
# stubs (jedi's typeshed alone is 6,000 files) and the libraries' own test suites.
site="$venv/lib/python3.11/site-packages"
find "$site" -name "*.pyi" -delete
find "$site" -mindepth 2 -type d -name tests -prune -exec rm -rf {} +

# pip wrote the staging path into script shebangs and pyvenv.cfg: point them at /opt.
grep -rlI --null "$stage" "$venv/bin" "$venv/pyvenv.cfg" | xargs -0 -r sed -i "s#$stage##g"
if grep -rqI "$stage" "$venv/bin" "$venv/pyvenv.cfg"; then
    echo "package: staging path left in the venv" >&2
    exit 1
fi

install -m 755 packaging/twinplan.sh "$stage/usr/bin/twinplan"
install -m 755 packaging/twinplan-gui.sh "$stage/usr/bin/twinplan-gui"
install -D -m 644 packaging/twinplan.desktop "$stage/usr/share/applications/twinplan.desktop"
install -D -m 644 packaging/twinplan-mime.xml "$stage/usr/share/mime/packages/twinplan.xml"
install -D -m 644 assets/twinplan.svg "$stage/usr/share/icons/hicolor/scalable/apps/twinplan.svg"
install -D -m 644 assets/twinplan-256.png "$stage/usr/share/icons/hicolor/256x256/apps/twinplan.png"
install -D -m 644 LICENSE "$stage/usr/share/doc/twinplan/copyright" 2>/dev/null \
    || install -D -m 644 packaging/copyright "$stage/usr/share/doc/twinplan/copyright"
for script in postinst postrm; do
    install -m 755 "packaging/debian/$script" "$stage/DEBIAN/$script"
done
size_kb=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@SIZE@/$size_kb/" packaging/debian/control.in > "$stage/DEBIAN/control"

echo "package: dpkg-deb --build ($COMPRESS)"
dpkg-deb --root-owner-group -Z"$COMPRESS" -z1 --threads-max=2 --build "$stage" "$OUT/$pkg.deb" >/dev/null
echo "package: $OUT/$pkg.deb ($(du -h "$OUT/$pkg.deb" | cut -f1), $((size_kb / 1024)) MiB installed," \
     "$(( $(date +%s) - t0 )) s)"
