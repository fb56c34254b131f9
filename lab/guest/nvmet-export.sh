#!/bin/sh
# usage: nvmet-export.sh ADDR DEVICE COMPUTE...
# One TCP port; per compute one subsystem nqn.2024-01.io.nnf:rabbit:<compute>
# that only its host NQN may connect to, all over the same DEVICE as nsid 1.
set -e
ADDR=$1; DEV=$2; shift 2
modprobe nvmet; modprobe nvmet_tcp
C=/sys/kernel/config/nvmet
mkdir -p $C/ports/1
echo tcp > $C/ports/1/addr_trtype; echo ipv4 > $C/ports/1/addr_adrfam
echo "$ADDR" > $C/ports/1/addr_traddr; echo 4420 > $C/ports/1/addr_trsvcid
for c in "$@"; do
  S=nqn.2024-01.io.nnf:rabbit:$c; H=nqn.2024-01.io.nnf:host:$c
  mkdir -p $C/hosts/$H $C/subsystems/$S/namespaces/1
  echo 0 > $C/subsystems/$S/attr_allow_any_host
  ln -s $C/hosts/$H $C/subsystems/$S/allowed_hosts/$H
  printf %s "$DEV" > $C/subsystems/$S/namespaces/1/device_path
  echo 1 > $C/subsystems/$S/namespaces/1/enable
  ln -s $C/subsystems/$S $C/ports/1/subsystems/$S
done
