# all: every sample at once in one VM, each on its own socket: the gpio card driven by Linux's
# pci-idio-16, the demo device's doorbell DMA, and libvfio-user's sample server (BAR0 of 8
# bytes, BAR1 of 16 KiB, partly mmapped by QEMU from the server's memfd).
load gpio-pci-idio-16
g=$(dev 494f:0dc8)
until_true 50 ls -d "$g"/gpiochip* || fail "pci-idio-16 registered no gpiochip"
chip=$(basename "$(ls -d "$g"/gpiochip* | head -n 1)")
gpioset -c "$chip" -t 0 OUT1=1 OUT14=1 || fail "gpioset"
ask gpio state
expect "the card's outputs" "$(echo "$REPLY" | sed -n 's/.*outputs=\([^ ]*\).*/\1/p')" 0x4002

d=$(dev 5655:d0e0)
setpci -s "$(basename "$d")" COMMAND=0006
b0=$(bar "$d" 0)
buf=0x10002000
devmem $((b0 + 0x00)) 32 $buf
devmem $((b0 + 0x04)) 32 0
devmem $((b0 + 0x08)) 32 256
devmem $((b0 + 0x0c)) 32 0x0a11a11a
devmem $((b0 + 0x10)) 32 1
until_true 100 sh -c "[ \$(devmem $((b0 + 0x14)) 32) = 0x00000001 ]" || fail "demo doorbell not done"
expect "demo DMA" "$(devmem $((buf + 0xfc)) 32)" 0x0A11A11A

l=$(dev dead:beef)
setpci -s "$(basename "$l")" COMMAND=0002
set -- $(sed -n 2p "$l/resource")
expect "lvu BAR1 size" "$(printf '%#x' $(($2 - $1 + 1)))" 0x4000
b1=$(bar "$l" 1)
# [0, 0x1000) is a sparse mmap area (QEMU maps the server's memfd); 0x1800 and 0x3ff0 are
# trapped (REGION_WRITE / REGION_READ), the latter past the C sample's 0x3000 bytes.
for off in 0x10 0x1800 0x2010 0x3ff0; do
    devmem $((b1 + off)) 32 $((0x5a000000 + off))
    expect "lvu BAR1+$off" "$(devmem $((b1 + off)) 32)" "$(printf '0x%08X' $((0x5a000000 + off)))"
done
lspci -nn | grep -E "494f:0dc8|5655:d0e0|dead:beef"
