# bench (not run by default): guest-visible latency of accesses that cross QEMU to the server.
# Configuration space: one process `cat`s the demo device's 4 KiB configuration space (1024
# dword reads, each an MMCONFIG access that QEMU's vfio-user-pci turns into a REGION_READ of
# region 7 for the bits it does not emulate); the same cat of a 4 KiB tmpfs file is the
# process's own cost. /proc/uptime has 10 ms resolution; N cats take seconds.
# BARs: vfu-probe (guest/probe) mmaps a BAR's sysfs resource file and times C accesses in one
# process: trapped registers (each a REGION_READ/REGION_WRITE round trip through QEMU to the
# server), against the demo's BAR2 page that QEMU mmaps from the server's memfd (no message).
N=${N:-40}
C=${C:-5000}
d=$(dev 5655:d0e0)
cat "$d/config" > /tmp/config
expect "config space size" "$(wc -c < /tmp/config)" 4096
t() { cut -d' ' -f1 /proc/uptime | tr -d .; } # centiseconds
run() { # microseconds per cat of $1
    i=0; s=$(t)
    while [ $i -lt $N ]; do cat "$1" > /dev/null; i=$((i + 1)); done
    echo $(( ($(t) - s) * 10000 / N ))
}
file=$(run /tmp/config)
cfg=$(run "$d/config")
file2=$(run /tmp/config)
base=$(( (file + file2) / 2 ))
echo "VFU-BENCH cat_tmpfs_us=$base cat_config_us=$cfg config_dword_read_us=$(( (cfg - base) / 1024 )) cats=$N"

setpci -s "$(basename "$d")" COMMAND=0006
g=$(dev 494f:0dc8)
setpci -s "$(basename "$g")" COMMAND=0002
probe() { # LABEL ARGS...: one timed vfu-probe run, as a VFU-BENCH line
    label=$1; shift
    out=$(vfu-probe "$@") || fail "vfu-probe $*: $out"
    echo "VFU-BENCH $label $out"
}
probe demo-bar0-read-trapped "$d" 0 0x0c 32 read "$C"
probe demo-bar0-write-trapped "$d" 0 0x0c 32 write 0x5a5a5a5a "$C"
probe demo-bar2-read-trapped "$d" 2 0x0 32 read "$C"
probe demo-bar2-read-mmapped "$d" 2 0x1000 32 read "$C"
probe demo-bar2-write-mmapped "$d" 2 0x1000 32 write 0x5a5a5a5a "$C"
probe gpio-bar2-read-trapped "$g" 2 0x1 8 read "$C"
probe gpio-bar2-write-posted "$g" 2 0x0 8 write 0x5a "$C"
expect "demo BAR0 pattern register, written $C times" "$(vfu-probe "$d" 0 0x0c 32 get)" 0x5A5A5A5A
expect "demo BAR2 mmapped page, written $C times" "$(vfu-probe "$d" 2 0x1000 32 get)" 0x5A5A5A5A
