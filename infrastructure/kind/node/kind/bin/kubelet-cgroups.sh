#!/bin/sh
# Creates the kubelet's cgroup root, kubelet.slice (cgroupRoot /kubelet with the systemd driver),
# in every cgroup v1 hierarchy before the kubelet starts: the kubelet refuses to start when a
# hierarchy lacks it ("cgroup has some missing paths"), and systemd realizes a slice only in the
# hierarchies its accounting needs. On cgroup v2, systemd does it all; nothing to do.
set -eu
[ -f /sys/fs/cgroup/cgroup.controllers ] && exit 0
for h in /sys/fs/cgroup/*; do
  mountpoint -q "$h" || continue
  mkdir -p "$h/kubelet.slice"
  # A new cpuset cgroup has no CPUs or memory nodes until it is given its parent's.
  if [ -f "$h/cpuset.cpus" ]; then
    cat "$h/cpuset.cpus" >"$h/kubelet.slice/cpuset.cpus"
    cat "$h/cpuset.mems" >"$h/kubelet.slice/cpuset.mems"
  fi
done
