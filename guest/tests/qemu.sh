# qemu: what QEMU sends that our other peers don't, seen through `vfio-user trace` between
# QEMU and two gpio servers (the second with x-no-posted-writes=on): posted REGION_WRITEs (NO_REPLY: the card has no mmappable region),
# REGION_WRITE_MULTI once posted writes pile up (the server is stopped while the guest writes,
# then continued), its DMA_MAP/UNMAP pattern over the RAM layout; then the server is killed
# while the guest runs: the guest's accesses fail without hanging it, and QEMU reports the
# lost connection and carries on (guest/run then serves the next QEMU from a restarted server).
g=$(dev 494f:0dc8 0x0000)
setpci -s "$(basename "$g")" COMMAND=0002
b2=$(bar "$g" 2)
# Posted writes pile up while the server is stopped: QEMU coalesces them (above 1024 queued).
ask stop gpio
vfu-probe "$g" 2 0x10 8 ramp 1600 || fail "vfu-probe: 1600 writes"
ask cont gpio
# A read waits for every posted write before it.
devmem $((b2 + 0x0)) 8 0x5a
expect "out0-7 after the posted flood" "$(devmem $((b2 + 0x0)) 8)" 0x5A
ask trace
echo "trace: $REPLY"

# x-no-posted-writes=on (the second card, subsystem 0x5359 set by QEMU's x-pci-sub-device-id):
# every BAR write waits for the server's reply; the card still works.
w=$(dev 494f:0dc8 0x5359)
setpci -s "$(basename "$w")" COMMAND=0002
vfu-probe "$w" 2 0x0 8 ramp 64 || fail "vfu-probe: 64 writes to the x-no-posted-writes card"
expect "x-no-posted-writes card out0-7" "$(vfu-probe "$w" 2 0x0 8 get)" 0x3F
vfu-probe "$w" 2 0x4 8 write 0xa5 1 > /dev/null
expect "x-no-posted-writes card out8-15" "$(vfu-probe "$w" 2 0x4 8 get)" 0xA5
ask trace-sync
echo "trace (x-no-posted-writes): $REPLY"

load gpio-pci-idio-16
until_true 50 ls -d "$g"/gpiochip* || fail "pci-idio-16 registered no gpiochip"
chip=$(basename "$(ls -d "$g"/gpiochip* | head -n 1)")
ask kill gpio
# The server is gone: these reach QEMU, which must answer them (with an error) and go on.
gpioset -c "$chip" -t 0 OUT2=1 && echo "gpioset after the kill: ok" || echo "gpioset after the kill: failed"
gpioget -c "$chip" --numeric IIN0 IIN9 && echo "gpioget after the kill: ok" || echo "gpioget after the kill: failed"
echo "the guest runs on"
