# gpio: Linux's own pci-idio-16 driver drives the gpio sample (an ACCES PCI-IDIO-16) end to
# end: outputs set with gpioset are what the card holds (asked of the host, and read from
# BAR2 once the driver is unbound), inputs driven from the host read back with gpioget, and
# an input change raises the card's INTx, which gpiomon sees as an edge.
load gpio-pci-idio-16
d=$(dev 494f:0dc8)
until_true 50 ls -d "$d"/gpiochip* || fail "pci-idio-16 registered no gpiochip"
chip=$(basename "$(ls -d "$d"/gpiochip* | head -n 1)")
expect "lines of $chip" "$(gpioinfo -c "$chip" | grep -c "line ")" 32
gpioinfo -c "$chip" | head -n 3

# Outputs: set, read back (the driver's register cache), and held by the card.
gpioset -c "$chip" -t 0 OUT0=1 OUT3=1 OUT9=1 OUT15=1 || fail "gpioset"
expect "gpioget OUT0 OUT1 OUT3 OUT9 OUT15" "$(gpioget -a -c "$chip" --numeric OUT0 OUT1 OUT3 OUT9 OUT15)" "1 0 1 1 1"
ask gpio state
echo "card: $REPLY"
expect "the card's outputs" "$(echo "$REPLY" | sed -n 's/.*outputs=\([^ ]*\).*/\1/p')" 0x8209
expect "the card's input filters (the driver deactivates them)" "$(echo "$REPLY" | sed -n 's/.*filters=\([^ ]*\).*/\1/p')" 0
gpioset -c "$chip" -t 0 OUT15=0 || fail "gpioset OUT15=0"
ask gpio state
expect "the card's outputs" "$(echo "$REPLY" | sed -n 's/.*outputs=\([^ ]*\).*/\1/p')" 0x0209

# Inputs, driven from outside.
ask gpio inputs 0x8005
expect "gpioget IIN0 IIN1 IIN2 IIN15" "$(gpioget -c "$chip" --numeric IIN0 IIN1 IIN2 IIN15)" "1 0 1 1"

# An input change raises INTx; gpiomon sees the edge. The card has one interrupt status bit
# for all 16 inputs, so Linux's driver (6.12, regmap-irq) hands every interrupt to all 16
# input lines' IRQs, and a line without one mapped yet oopses the kernel (handle_nested_irq
# of IRQ 0): gpiomon watches all 16 inputs, and sees one event on each per interrupt.
irq=$(cat "$d/irq")
before=$(awk -v irq="$irq:" '$1 == irq { s = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i; print s }' /proc/interrupts)
inputs="IIN0 IIN1 IIN2 IIN3 IIN4 IIN5 IIN6 IIN7 IIN8 IIN9 IIN10 IIN11 IIN12 IIN13 IIN14 IIN15"
gpiomon -c "$chip" -e both -n 16 $inputs > /tmp/mon 2>&1 &
mon=$!
until_true 50 sh -c "gpioinfo -c $chip IIN15 | grep -q gpiomon" || fail "gpiomon did not request the inputs"
ask gpio inputs 0x8015
n=0
while kill -0 $mon 2>/dev/null; do
    n=$((n + 1))
    [ $n -lt 100 ] || { kill $mon; fail "gpiomon saw no edge on IIN4 in 10 s"; }
    usleep 100000
done
cat /tmp/mon
grep -q 'rising.*"IIN4"' /tmp/mon || fail "gpiomon: no rising edge on IIN4: $(cat /tmp/mon)"
grep -q 'falling.*"IIN3"' /tmp/mon || fail "gpiomon: IIN3 (low) not reported falling: $(cat /tmp/mon)"
after=$(awk -v irq="$irq:" '$1 == irq { s = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i; print s }' /proc/interrupts)
[ "$after" -gt "$before" ] || fail "IRQ $irq count $before -> $after"
grep "pci-idio-16\|$irq:" /proc/interrupts
ask gpio state
echo "card: $REPLY"
case "$REPLY" in *interrupts=0*) fail "the card raised no interrupt: $REPLY" ;; esac

# BAR2 itself, once the driver lets go of it: out0-7 at 0, out8-15 at 4, in0-7 at 1, in8-15 at 5.
echo "$(basename "$d")" > /sys/bus/pci/drivers/pci-idio-16/unbind
b=$(bar "$d" 2)
expect "BAR2 out0-7" "$(devmem $((b + 0)) 8)" 0x09
expect "BAR2 out8-15" "$(devmem $((b + 4)) 8)" 0x02
expect "BAR2 in0-7" "$(devmem $((b + 1)) 8)" 0x15
expect "BAR2 in8-15" "$(devmem $((b + 5)) 8)" 0x80
