# qemu: what QEMU sends that our other peers don't, seen through `vfio-user trace` between
# QEMU and the gpio server: posted REGION_WRITEs (NO_REPLY: the card has no mmappable region),
# REGION_WRITE_MULTI once posted writes pile up (the server is stopped while the guest writes,
# then continued), its DMA_MAP/UNMAP pattern over the RAM layout; then the server is killed
# while the guest runs: the guest's accesses fail without hanging it, and QEMU reports the
# lost connection and carries on (guest/run then serves the next QEMU from a restarted server).
g=$(dev 494f:0dc8)
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

load gpio-pci-idio-16
until_true 50 ls -d "$g"/gpiochip* || fail "pci-idio-16 registered no gpiochip"
chip=$(basename "$(ls -d "$g"/gpiochip* | head -n 1)")
ask kill gpio
# The server is gone: these reach QEMU, which must answer them (with an error) and go on.
gpioset -c "$chip" -t 0 OUT2=1 && echo "gpioset after the kill: ok" || echo "gpioset after the kill: failed"
gpioget -c "$chip" --numeric IIN0 IIN9 && echo "gpioget after the kill: ok" || echo "gpioget after the kill: failed"
echo "the guest runs on"
