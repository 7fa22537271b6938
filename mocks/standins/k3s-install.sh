#!/bin/sh
# Stand-in for https://get.k3s.io on a simulated node: instead of downloading k3s it
# hands over to kiwi-node-standin, which installs and starts the simulated k3s.
exec "${KIWI_SIM_STANDIN:-/usr/local/lib/kiwi-sim/kiwi-node-standin}" k3s-install "$@"
