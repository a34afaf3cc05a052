# bench (not run by default): guest-visible latency of an access that crosses QEMU to the
# server. One process can read the demo device's configuration space 4 bytes at a time with
# `cat .../config` (4 KiB: 1024 dword reads, each an MMCONFIG access that QEMU's vfio-user-pci
# turns into a REGION_READ of region 7 for the bits it does not emulate); the same cat of a
# 4 KiB tmpfs file is the process's own cost. BAR reads cannot be looped in one process here
# (busybox devmem is a process per access, tens of ms under TCG; sysfs BAR files only mmap).
# /proc/uptime has 10 ms resolution; N cats take seconds.
N=${N:-40}
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
