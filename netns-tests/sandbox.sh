#!/usr/bin/env bash
# sandbox.sh DIR COMMAND...: runs COMMAND (by exec, so it keeps this process's PID) in the calling
# process's mount namespace, which must be a private one (`unshare -m --propagation private`),
# with the paths `vpn` uses by default made private to the test:
#   /etc/vpn      -> DIR/etc-vpn      (the configuration and passphrase; kept across runs)
#   /var/lib/vpn  -> DIR/var-lib-vpn  (the store and audit log; kept across runs)
#   /run          -> a fresh tmpfs    (/run/vpn and /var/run/wireguard sockets)
# /etc and /var/lib get overlays with their upper layers in DIR, so that the mount points can be
# made without touching the host's directories. Nothing of this is visible outside the namespace.
set -euo pipefail
d=$1
shift
mkdir -p "$d/etc-vpn" "$d/var-lib-vpn" "$d/ov/etc-u" "$d/ov/etc-w" "$d/ov/lib-u" "$d/ov/lib-w"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$d/ov/etc-u,workdir=$d/ov/etc-w" /etc
mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$d/ov/lib-u,workdir=$d/ov/lib-w" /var/lib
mkdir -p /etc/vpn /var/lib/vpn
mount --bind "$d/etc-vpn" /etc/vpn
mount --bind "$d/var-lib-vpn" /var/lib/vpn
mount -t tmpfs -o mode=0755 tmpfs /run
[[ -L /var/run ]] || mount -t tmpfs -o mode=0755 tmpfs /var/run
exec "$@"
