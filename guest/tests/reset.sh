# reset: a guest-initiated Function Level Reset (sysfs reset) resets the demo device's
# registers; then the gpio card is removed (QMP device_del) and added again (device_add): its
# server releases everything QEMU gave it (fds, DMA mappings) while the guest runs, and the
# re-added card works under Linux's driver.
d=$(dev 5655:d0e0)
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

# Hot-unplug and plug again: the gpio card (see guest/README.md for why not the demo device).
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
