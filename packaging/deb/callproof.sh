#!/bin/sh
# /usr/bin/callproof: the command of the environment the package built in /opt/callproof.
exec /opt/callproof/bin/callproof "$@"
