# blk-bench: fio against /dev/vda, whatever serves it (guest/bench-virtio-blk boots this guest
# once per backend): 4 KiB random read and write at queue depth 16, 1 MiB sequential read and
# write. One "VFU-BENCH job read-IOPS read-KiB/s write-IOPS write-KiB/s" line per job.
load virtio_blk
until_true 100 test -b /dev/vda || fail "no /dev/vda"
secs=$(sed -n 's/.*vfu\.bench_secs=\([0-9]*\).*/\1/p' /proc/cmdline)
for job in randread:4k:16 randwrite:4k:16 read:1M:4 write:1M:4; do
    rw=${job%%:*}; rest=${job#*:}; bs=${rest%%:*}; qd=${rest#*:}
    out=$(fio --name="$rw" --filename=/dev/vda --ioengine=libaio --direct=1 --rw="$rw" --bs="$bs" \
        --iodepth="$qd" --size=192M --time_based --runtime="${secs:-20}" --ramp_time=2 \
        --minimal 2>&1) || fail "fio $rw: $out"
    # Terse v3: field 7/8 read KiB/s and IOPS, 48/49 write KiB/s and IOPS.
    echo "$out" | tail -n 1 | awk -F';' -v j="$rw-$bs-qd$qd" '{ print "VFU-BENCH", j, $8, $7, $49, $48 }'
done
