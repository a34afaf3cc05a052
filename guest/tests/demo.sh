# demo: the demo device under Linux with no driver of ours. lspci -vvv decodes its PM, MSI-X,
# PCI Express and DSN capabilities; its doorbell DMA lands in guest RAM (a reserved 1 MiB at
# 0x10000000, memmap= on the command line) through QEMU's DMA_MAP of the memfd guest memory;
# and the MSI-X interrupt it raises reaches the guest's CPU. Debian's kernel has neither
# VFIO no-IOMMU mode nor an MSI-X capable uio driver, so the test programs MSI-X entry 0
# itself (QEMU's emulated table, in BAR0) with an APIC vector nothing uses, and looks for the
# kernel's report of an interrupt on that vector.
d=$(dev 5655:d0e0)
s=$(basename "$d")
lspci -vvv -s "$s" > /tmp/lspci
cat /tmp/lspci
grep -q "Power Management version" /tmp/lspci || fail "lspci: no PM capability"
grep -q "MSI-X: Enable- Count=2" /tmp/lspci || fail "lspci: no MSI-X capability with 2 vectors"
grep -q "Express (v2) Endpoint" /tmp/lspci || fail "lspci: no PCI Express endpoint capability"
grep -q "FLReset+" /tmp/lspci || fail "lspci: no FLR"
grep -q "Device Serial Number 01-23-45-67-89-ab-cd-ef" /tmp/lspci || fail "lspci: no DSN"

setpci -s "$s" COMMAND=0006
b0=$(bar "$d" 0)
buf=0x10000000
vector=223
irqs() { dmesg | grep -cE "No irq handler for 0\.$vector\$|0\.$vector No irq handler" || true; }
# MSI-X entry 0: message address (CPU 0's local APIC), data (fixed, edge, the vector), masked;
# MSI-X enabled with it masked. QEMU keeps the table's mask bits to itself: it gives the
# server no eventfd for vector 0 (SET_IRQS with fd -1) and no SET_IRQS MASK, so the server
# sees an unmasked vector with nowhere to go. An interrupt raised now is lost: no pending bit
# in the PBA (QEMU forwards PBA reads to the server), nothing delivered at unmask.
devmem $((b0 + 0x800)) 32 0xfee00000
devmem $((b0 + 0x804)) 32 0
devmem $((b0 + 0x808)) 32 $vector
devmem $((b0 + 0x80c)) 32 1
setpci -s "$s" CAP_MSIX+2.w=8000:c000
lspci -vv -s "$s" | grep -q "MSI-X: Enable+" || fail "MSI-X not enabled"
devmem $((b0 + 0x10)) 32 1
until_true 100 sh -c "[ \$(devmem $((b0 + 0x14)) 32) = 0x00000001 ]" || fail "doorbell (vector masked) not done"
expect "PBA after a masked vector fired (QEMU 11.1: lost)" "$(devmem $((b0 + 0xc00)) 32)" 0x00000000
before=$(irqs)
devmem $((b0 + 0x80c)) 32 0
usleep 500000
expect "interrupts on vector $vector after unmasking (QEMU 11.1: lost)" "$(irqs)" "$before"
ask msix-trace demo 0xc00
echo "trace: $REPLY"

# The doorbell: 4 KiB of the pattern at buf, then MSI-X vector 0.
devmem $((buf + 0x1000)) 32 0x11111111
devmem $((b0 + 0x00)) 32 $buf
devmem $((b0 + 0x04)) 32 0
devmem $((b0 + 0x08)) 32 4096
devmem $((b0 + 0x0c)) 32 0x5afec0de
devmem $((b0 + 0x10)) 32 1
until_true 100 sh -c "[ \$(devmem $((b0 + 0x14)) 32) = 0x00000002 ]" || fail "doorbell not done: $(devmem $((b0 + 0x14)) 32)"
expect "DMA error register" "$(devmem $((b0 + 0x18)) 32)" 0x00000000
for off in 0 4 0x800 0xffc; do
    expect "guest RAM at buf+$off" "$(devmem $((buf + off)) 32)" 0x5AFEC0DE
done
expect "guest RAM past the DMA" "$(devmem $((buf + 0x1000)) 32)" 0x11111111
# Linux 6.12 says "No irq handler for 0.223" (CPU 0, vector 223); older kernels put the
# CPU.vector before "No irq handler for vector".
until_true 50 sh -c "[ \$(dmesg | grep -cE 'No irq handler for 0\.$vector\$|0\.$vector No irq handler') -gt $before ]" \
    || fail "no interrupt on vector $vector: $(dmesg | tail -n 3)"
dmesg | grep "No irq handler"
echo "MSI-X vector 0 reached CPU 0 as vector $vector"
