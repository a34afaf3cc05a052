# blk-bench: fio against three disks of one image (guest/run's virtio-blk-bench attaches
# them): ours (serial vfio-user-blk), QEMU's in-process virtio-blk-pci (serial in-process)
# and qemu-storage-daemon's vhost-user-blk (the other one); a fourth, another build of ours
# (serial vfio-user-cmp), when guest/run is asked to compare two builds. 4 KiB random read and write at
# queue depth 16, 1 MiB sequential read and write at depth 4; each job runs on each disk in
# turn, for vfu.bench_rounds rounds, the order rotating each round. One
# "VFU-BENCH backend job round read-IOPS read-KiB/s write-IOPS write-KiB/s" line per run, and a
# "VFU-BENCH-COST backend job round interrupts I/Os cpu-usr% cpu-sys% mean-latency-us" line:
# the disk's interrupts in the guest (all its MSI-X vectors) and the I/Os fio completed, fio's
# CPU use and its mean completion latency. vfu.bench_jobs (e.g. randread:4k:16,read:1M:4)
# picks the jobs. Before each run the host writes the image's dirty pages back (ask sync).
load virtio_blk
disks=$(sed -n 's/.*vfu\.bench_disks=\([0-9]*\).*/\1/p' /proc/cmdline)
until_true 100 sh -c "ls /sys/block | grep -c '^vd' | grep -qx ${disks:-3}" || fail "${disks:-3} virtio disks: $(ls /sys/block)"
ours= inproc= vhost= cmp=
for d in /sys/block/vd*; do
    case "$(cat "$d/serial" 2>/dev/null)" in
        vfio-user-blk*) ours=${d##*/} ;;
        vfio-user-cmp*) cmp=${d##*/} ;;
        in-process*) inproc=${d##*/} ;;
        *) vhost=${d##*/} ;;
    esac
done
[ -n "$ours" ] && [ -n "$inproc" ] && [ -n "$vhost" ] || fail "disks: ours=$ours vhost=$vhost in-process=$inproc"
for v in "$ours" "$vhost" "$inproc" $cmp; do
    until_true 100 test -b "/dev/$v" || fail "no /dev/$v"
    q=/sys/block/$v/queue
    # What the driver made of each device's limits (segments per request, largest request).
    echo "VFU-BENCH-LIMITS $v max_segments=$(cat $q/max_segments) max_segment_size=$(cat $q/max_segment_size)" \
        "max_sectors_kb=$(cat $q/max_sectors_kb)"
done
secs=$(sed -n 's/.*vfu\.bench_secs=\([0-9]*\).*/\1/p' /proc/cmdline)
rounds=$(sed -n 's/.*vfu\.bench_rounds=\([0-9]*\).*/\1/p' /proc/cmdline)
set -- "vfio-user:$ours" "vhost-user-blk:$vhost" "virtio-blk-pci:$inproc"
# A second build of ours (guest/run's VFU_BENCH_CMP_BIN), when attached.
[ -z "$cmp" ] || set -- "$@" "vfio-user-cmp:$cmp"
# The disk's interrupts so far: every /proc/interrupts line of its virtio device.
irqs() {
    dev=$(basename "$(readlink "/sys/block/$1/device")")
    awk -v d="$dev" '$NF ~ "^" d "-" { n += $2 } END { print n + 0 }' /proc/interrupts
}
jobs=$(sed -n 's/.*vfu\.bench_jobs=\([^ ]*\).*/\1/p' /proc/cmdline | tr , ' ')
for job in ${jobs:-randread:4k:16 randwrite:4k:16 read:1M:4 write:1M:4}; do
    rw=${job%%:*}; rest=${job#*:}; bs=${rest%%:*}; qd=${rest#*:}
    r=0
    while [ "$r" -lt "${rounds:-3}" ]; do
        for disk in "$@"; do
            name=${disk%%:*}; dev=/dev/${disk#*:}
            # The image's dirty pages on the host written back: no run pays for another's.
            ask sync
            i0=$(irqs "${disk#*:}")
            out=$(fio --name="$rw" --filename="$dev" --ioengine=libaio --direct=1 --rw="$rw" --bs="$bs" \
                --iodepth="$qd" --size=192M --time_based --runtime="${secs:-10}" --ramp_time=1 \
                --minimal 2>&1) || fail "fio $rw on $name: $out"
            # Terse v3: field 7/8 read KiB/s and IOPS, 48/49 write KiB/s and IOPS.
            echo "$out" | tail -n 1 |
                awk -F';' -v b="$name" -v j="$rw-$bs-qd$qd" -v r="$r" '{ print "VFU-BENCH", b, j, r, $8, $7, $49, $48 }'
            # Terse v3: 6/47 KiB moved, 40/81 mean total latency (us), 88/89 usr/sys CPU %.
            echo "$out" | tail -n 1 | awk -F';' -v b="$name" -v j="$rw-$bs-qd$qd" -v r="$r" -v bs="$bs" \
                -v irq=$(( $(irqs "${disk#*:}") - i0 )) '{ k = (bs == "4k") ? 4 : 1024;
                    lat = ($6 > 0) ? $40 : $81;
                    printf "VFU-BENCH-COST %s %s %s %d %d %s %s %.0f\n", b, j, r, irq, ($6 + $47) / k, $88, $89, lat }'
        done
        # Rotate: the next round starts with the next disk.
        first=$1; shift; set -- "$@" "$first"
        r=$((r + 1))
    done
done
