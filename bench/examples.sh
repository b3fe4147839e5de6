# bench/examples.sh: sourced by the scripts that build and run one of examples/ (bench/fleet.sh,
# bench/quota.sh). Sets REPO (and cds there), CARGO_TARGET_DIR, and DIR, the target directory of
# PROFILE (release or dev); defines need_redis_server.

PROFILE=${PROFILE:-release}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
case $PROFILE in
release) DIR=release ;;
dev) DIR=debug ;;
*) echo "PROFILE must be release or dev" >&2; exit 2 ;;
esac

# Installs redis-server from Debian's packages when it is missing and this runs as root;
# otherwise says how to install it and exits. $1: what needs it, for the message.
need_redis_server() {
    command -v redis-server >/dev/null && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    fi
    command -v redis-server >/dev/null || {
        echo "$1 needs redis-server: apt-get install -y redis-server (as root)" >&2
        exit 1
    }
}
