#!/bin/sh
# Makes sure the CMocka development files exist before tests are built.
# Installs them through the system package manager when we can, saying so;
# otherwise stops with the exact command to run.
if pkg-config --exists cmocka 2>/dev/null || [ -f /usr/include/cmocka.h ] || [ -f /usr/local/include/cmocka.h ] || [ -f /opt/homebrew/include/cmocka.h ]; then
    exit 0
fi
echo "deepc: CMocka (the unit-test library) is missing; installing it." >&2
if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    if [ -z "$SUDO" ] || sudo -n true 2>/dev/null; then
        echo "deepc: running: $SUDO apt-get install -y libcmocka-dev" >&2
        ($SUDO apt-get install -y libcmocka-dev || ($SUDO apt-get update && $SUDO apt-get install -y libcmocka-dev)) >&2 && exit 0
    fi
    echo "deepc: please run: sudo apt-get install -y libcmocka-dev" >&2
elif command -v brew >/dev/null 2>&1; then
    echo "deepc: running: brew install cmocka" >&2
    brew install cmocka >&2 && exit 0
    echo "deepc: please run: brew install cmocka" >&2
elif command -v dnf >/dev/null 2>&1; then
    echo "deepc: please run: sudo dnf install -y libcmocka-devel" >&2
else
    echo "deepc: please install CMocka (https://cmocka.org) and re-run make test" >&2
fi
exit 1
