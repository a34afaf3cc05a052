# virtio-blk: Linux's virtio_blk driver on `vfio-user serve virtio-blk` (2 queues, 2 vCPUs):
# fio with crc32c verification from both vCPUs at once, then mkfs.ext4, files written,
# unmounted, mounted again and read back. The host checks the image after the guest is off
# (guest/run: the files' contents through debugfs, both queues used in the server's log).
load virtio_blk
until_true 100 test -b /dev/vda || fail "no /dev/vda"
expect "hardware queues" "$(ls /sys/block/vda/mq | wc -l)" 2
expect "capacity (sectors)" "$(cat /sys/block/vda/size)" 262144
expect "serial" "$(cat /sys/block/vda/serial)" vfu-guest-blk
expect "online CPUs" "$(grep -c ^processor /proc/cpuinfo)" 2

# Two jobs, one per vCPU (so one per hardware queue), each on its own 48 MiB.
fio --name=verify --filename=/dev/vda --ioengine=libaio --direct=1 --rw=randwrite --bs=4k \
    --iodepth=16 --size=48M --numjobs=2 --offset_increment=48M --cpus_allowed=0,1 \
    --cpus_allowed_policy=split --verify=crc32c --verify_fatal=1 --do_verify=1 \
    --group_reporting >/tmp/fio.out 2>&1 || { tail -n 3 /tmp/fio.out >&2; fail "fio verify failed"; }
grep -q "err= 0" /tmp/fio.out || fail "fio reported errors"
grep -q "read: IOPS" /tmp/fio.out || fail "fio did not read back to verify"
echo "fio verify=crc32c: $(grep -o 'IOPS=[^,]*' /tmp/fio.out | tr '\n' ' ')"

load crc32c_generic ext4
mkfs.ext4 -q -F /dev/vda >/tmp/mkfs.out 2>&1 || { cat /tmp/mkfs.out >&2; fail "mkfs.ext4 failed"; }
mkdir -p /mnt
mount -t ext4 /dev/vda /mnt || fail "mount"
seq 1 100000 > /mnt/seq.txt
dd if=/dev/urandom of=/mnt/random.bin bs=64k count=128 2>/dev/null || fail "writing random.bin"
mkdir /mnt/dir && echo "written by the guest" > /mnt/dir/note.txt
sum=$(md5sum /mnt/random.bin | cut -d' ' -f1)
umount /mnt || fail "umount"
mount -t ext4 /dev/vda /mnt || fail "mount again"
expect "random.bin after remount" "$(md5sum /mnt/random.bin | cut -d' ' -f1)" "$sum"
seq 1 100000 | cmp -s - /mnt/seq.txt || fail "seq.txt differs after remount"
expect "note.txt" "$(cat /mnt/dir/note.txt)" "written by the guest"
umount /mnt || fail "umount again"
# The host compares the image with this after the guest is off.
ask blk-written "$sum"
