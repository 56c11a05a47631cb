#!/bin/bash
# PID 1 inside user-mode-linux (started by run-in-uml). Prepares a minimal
# system, runs the requested command, records its status and powers off.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc proc /proc
for arg in $(cat /proc/cmdline); do
  case "$arg" in btns_scratch=*) scratch=${arg#btns_scratch=} ;; esac
done
# Read the scratch files before tmpfs mounts can hide the scratch folder.
rw_dirs=$(cat "$scratch/rw_dirs")
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=755 tmpfs /run

mount -t tmpfs -o mode=1777 tmpfs /var/tmp
mkdir -p /run/netns /run/lock
for dir in $rw_dirs; do
  mkdir -p "$dir" 2>/dev/null
  mount -t hostfs -o "$dir" none "$dir"
done

out="$scratch/output"
{
  echo "$scratch/modprobe" > /proc/sys/kernel/modprobe
  for m in esp4 esp6 xfrm_user xfrm4_tunnel xfrm6_tunnel xfrm_ipcomp veth sch_netem tun \
           gcm ghash-generic ctr seqiv echainiv authenc authencesn cbc hmac sha512_generic \
           chacha20poly1305 chacha_generic poly1305_generic ccm cmac xcbc drbg; do
    "$scratch/modprobe" "$m" 2>/dev/null || echo "uml-init: module $m did not load"
  done
  ip link set lo up
  # Instantiate each ESP crypto template once, so the first real SA does not
  # stall. Every module is loaded already, so the kernel's on-demand requests
  # for template names can return at once instead of running modprobe.
  echo /bin/true > /proc/sys/kernel/modprobe
  ip netns add warmup
  k16=0x00112233445566778899aabbccddeeff00112233
  k32=0x00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233
  ip -n warmup xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 1 mode transport aead 'rfc4106(gcm(aes))' $k16 128
  ip -n warmup xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 2 mode transport aead 'rfc7539esp(chacha20,poly1305)' $k32 128
  ip -n warmup xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 3 mode transport enc 'cbc(aes)' 0x00112233445566778899aabbccddeeff auth-trunc 'hmac(sha256)' 0x00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff 128
  ip netns del warmup
  echo "$scratch/modprobe" > /proc/sys/kernel/modprobe
} > "$scratch/boot.log" 2>&1

. "$scratch/env.sh" 2>/dev/null
# The host /tmp is read-only in here; scratch files go to a tmpfs that
# survives the private /run of each test host.
export TMPDIR=/var/tmp
cd "$(cat "$scratch/cwd")" 2>/dev/null || cd /
if grep -qw btns_follow /proc/cmdline; then
  # run-in-uml --follow: the output also goes to the console, which the
  # host shows as it comes (a hostfs file is only complete after sync).
  echo "@@btns-output-begin"
  eval "$(cat "$scratch/command")" 2>&1 < /dev/null | tee "$out"
  rc=${PIPESTATUS[0]}
  echo "@@btns-output-end"
else
  eval "$(cat "$scratch/command")" > "$out" 2>&1 < /dev/null
  rc=$?
fi
echo "$rc" > "$scratch/rc.tmp"
mv "$scratch/rc.tmp" "$scratch/rc"
sync
poweroff -f
