# reset: a guest-initiated Function Level Reset (sysfs reset) resets the demo device's
# registers; then the demo device served with --msi and the gpio card are each removed (QMP
# device_del) and added again (device_add): each server releases everything QEMU gave it
# (fds, DMA mappings) while the guest runs, and the re-added devices work (the demo's
# doorbell DMA into guest RAM, Linux's gpio driver). Last, device_del of the demo device with
# MSI-X, which aborts QEMU 11.1 (guest/README.md): the host checks the abort and its servers.
d=$(dev 5655:d0e0 0x0001)
s=$(basename "$d")
echo "reset methods: $(cat "$d/reset_method")"
case "$(cat "$d/reset_method")" in flr*) ;; *) fail "FLR is not Linux's first reset method: $(cat "$d/reset_method")" ;; esac
setpci -s "$s" COMMAND=0006
b0=$(bar "$d" 0)
devmem $((b0 + 0x0c)) 32 0x12345678
expect "pattern register" "$(devmem $((b0 + 0x0c)) 32)" 0x12345678
echo 1 > "$d/reset" || fail "sysfs reset failed"
# Linux saves and restores the command register around the reset.
expect "pattern register after FLR" "$(devmem $((b0 + 0x0c)) 32)" 0x00000000

# The demo device with MSI instead of MSI-X: unplugged and plugged again; the new QEMU
# device is reset at realize and its DMA works (new DMA_MAPs on a new connection).
m=$(dev 5655:d0e0 0x0002)
ms=$(basename "$m")
lspci -vv -s "$ms" | grep -q "MSI: Enable- Count=1/2 Maskable+" || fail "demo --msi: no MSI capability"
lspci -vv -s "$ms" | grep -q "MSI-X" && fail "demo --msi has MSI-X"
setpci -s "$ms" COMMAND=0006
devmem $(($(bar "$m" 0) + 0x0c)) 32 0x0badcafe
ask unplug demo-msi
until_true 100 sh -c "[ ! -e $m ]" || fail "$ms still present after device_del"
echo "$ms removed"
ask plug demo-msi
until_true 100 sh -c "[ -e $m ]" || { echo 1 > /sys/bus/pci/rescan; until_true 100 sh -c "[ -e $m ]"; } \
    || fail "$ms did not come back after device_add"
echo "$ms back"
setpci -s "$ms" COMMAND=0006
mb=$(bar "$m" 0)
expect "demo --msi pattern register after re-plug (reset at realize)" "$(devmem $((mb + 0x0c)) 32)" 0x00000000
buf=0x10003000
devmem $((mb + 0x00)) 32 $buf
devmem $((mb + 0x04)) 32 0
devmem $((mb + 0x08)) 32 64
devmem $((mb + 0x0c)) 32 0x7e57ab1e
devmem $((mb + 0x10)) 32 1
until_true 100 sh -c "[ \$(devmem $((mb + 0x14)) 32) = 0x00000001 ]" || fail "demo --msi doorbell not done after re-plug"
expect "guest RAM after the re-plugged device's DMA" "$(devmem $((buf + 0x3c)) 32)" 0x7E57AB1E

# The gpio card: unplugged, plugged again, and driven by Linux's driver.
g=$(dev 494f:0dc8)
gs=$(basename "$g")
ask unplug gpio
until_true 100 sh -c "[ ! -e $g ]" || fail "$gs still present after device_del"
echo "$gs removed"
ask plug gpio
until_true 100 sh -c "[ -e $g ]" || { echo 1 > /sys/bus/pci/rescan; until_true 100 sh -c "[ -e $g ]"; } \
    || fail "$gs did not come back after device_add"
echo "$gs back"
load gpio-pci-idio-16
until_true 50 ls -d "$g"/gpiochip* || fail "pci-idio-16 registered no gpiochip after re-plug"
chip=$(basename "$(ls -d "$g"/gpiochip* | head -n 1)")
gpioset -c "$chip" -t 0 OUT7=1 || fail "gpioset"
ask gpio state
expect "the card's outputs after re-plug" "$(echo "$REPLY" | sed -n 's/.*outputs=\([^ ]*\).*/\1/p')" 0x0080

# QEMU 11.1 aborts on device_del of a vfio-user-pci device with MSI-X; the host expects that,
# and then no reply comes: QEMU is gone. A fixed QEMU deletes the device: the host checks the
# server released everything and replies "survived".
ask unplug-aborts demo
expect "the host's view of device_del of the MSI-X demo device" "$REPLY" survived
