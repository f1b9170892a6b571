#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Builds the rig's guest: a PVH domain booting dom0's own Debian kernel with
# a busybox initramfs that serves a request counter over HTTP on
# 192.168.57.50. Both hosts get identical files, because the backup restores
# the guest with the same config.
set -euo pipefail
dir=/var/lib/resilire/guest
kver=$(find /lib/modules -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -1)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -d "$dir" /etc/resilire "$root"/{bin,proc,sys,dev,tmp,www/cgi-bin,lib/modules}
cp /bin/busybox "$root/bin/busybox"
mknod -m 600 "$root/dev/console" c 5 1
touch "$root/lib/modules/order"
for a in sh mount ip insmod sleep cat echo printf httpd mkdir; do ln -s busybox "$root/bin/$a"; done
# The paravirtual NIC driver and its dependencies, uncompressed for busybox insmod.
for m in $(modprobe -S "$kver" --show-depends xen-netfront | awk '$1 == "insmod" {print $2}'); do
  case "$m" in
    *.xz) xz -dc "$m" > "$root/lib/modules/$(basename "${m%.xz}")" ;;
    *.zst) zstd -dc "$m" > "$root/lib/modules/$(basename "${m%.zst}")" ;;
    *) cp "$m" "$root/lib/modules/" ;;
  esac
  name=$(basename "${m%.*z*}")
  echo "${name%.ko}" >> "$root/lib/modules/order"
done
cat > "$root/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko; done
ip link set lo up
ip link set eth0 up
ip addr add 192.168.57.50/24 dev eth0
echo 0 > /tmp/n
httpd -p 80 -h /www
echo "rig guest up: http://192.168.57.50/cgi-bin/n"
while :; do sleep 3600; done
INIT
cat > "$root/www/cgi-bin/n" <<'CGI'
#!/bin/sh
# Each request increments a counter held in guest memory: after a failover
# the client must never see a number it has seen before.
n=$(cat /tmp/n); n=$((n + 1)); echo $n > /tmp/n
printf 'Content-Type: text/plain\r\n\r\n%s\n' "$n"
CGI
chmod 0755 "$root/init" "$root/www/cgi-bin/n"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$dir/initrd.img"
cp "/boot/vmlinuz-$kver" "$dir/vmlinuz"
cat > /etc/resilire/guest.cfg <<CFG
# Resilire rig guest (PVH: no device model, which the Xen driver requires).
name = "guest"
type = "pvh"
kernel = "$dir/vmlinuz"
ramdisk = "$dir/initrd.img"
extra = "console=hvc0 quiet"
memory = 256
maxmem = 256
vcpus = 1
# vifname is fixed so both hosts see the same guest port name.
vif = [ "bridge=xenbr0,mac=00:16:3e:52:53:01,vifname=rsl-guest" ]
on_crash = "preserve"
CFG
