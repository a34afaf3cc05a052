# Helpers every guest test may use (sourced by /init; tests run in a subshell: `fail` or a
# non-zero exit ends the test, the last line it wrote to stderr is the verdict's reason).

# fail MESSAGE: ends the test with this reason.
fail() {
    echo "$*" >&2
    exit 1
}

# load MODULE...: loads modules and what they depend on (lists made by mkinitramfs).
load() {
    for m in "$@"; do
        [ -f "/lib/modules/deps/$m" ] || fail "module $m is not in the initramfs"
        while read -r ko args; do
            name=$(basename "$ko" .ko | tr - _)
            [ -d "/sys/module/$name" ] && continue
            insmod "$ko" $args || fail "insmod $ko failed"
        done < "/lib/modules/deps/$m"
    done
}

# ask COMMAND...: asks the host (the test's host side, guest/run) to do something; its reply
# line is in $REPLY. A reply starting with "error" fails the test.
ask() {
    echo "$*" >&3
    read -r REPLY <&3 || fail "no reply from the host to: $*"
    case "$REPLY" in error*) fail "host: $REPLY (to: $*)" ;; esac
}

# dev VENDOR:DEVICE [SUBSYSTEM_DEVICE]: the sysfs path of the first such PCI function (with
# that subsystem device ID, e.g. 0x0002, if given); fails if none.
dev() {
    for d in /sys/bus/pci/devices/*; do
        v=$(cat "$d/vendor"); p=$(cat "$d/device")
        [ -z "$2" ] || [ "$(cat "$d/subsystem_device")" = "$2" ] || continue
        if [ "${v#0x}:${p#0x}" = "$1" ]; then echo "$d"; return 0; fi
    done
    fail "no PCI device $1 $2"
}

# devs VENDOR:DEVICE: the sysfs paths of every such function.
devs() {
    for d in /sys/bus/pci/devices/*; do
        v=$(cat "$d/vendor"); p=$(cat "$d/device")
        [ "${v#0x}:${p#0x}" = "$1" ] && echo "$d"
    done
}

# bar DEVPATH N: BAR N's physical address.
bar() {
    sed -n "$(($2 + 1))p" "$1/resource" | cut -d' ' -f1
}

# expect WHAT GOT WANT: fails unless GOT = WANT.
expect() {
    [ "$2" = "$3" ] || fail "$1: got $2, want $3"
}

# until_true TRIES COMMAND...: runs COMMAND every 0.1 s until it succeeds, at most TRIES times.
until_true() {
    n=$1; shift
    while ! "$@" >/dev/null 2>&1; do
        n=$((n - 1))
        [ $n -gt 0 ] || return 1
        usleep 100000
    done
}
