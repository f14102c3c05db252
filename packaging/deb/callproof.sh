#!/bin/sh
# /usr/bin/callproof: the command of the environment the package built in /opt/callproof,
# with the installed configuration and, for whoever may read it (root, the asterisk group),
# its secrets: a bare `callproof ...` then sees what the services see. An explicit
# CALLPROOF_CONFIG, --config or CALLPROOF_* variable still wins. The secrets file is read as
# data (NAME=value lines, exported verbatim), never run as shell.
: "${CALLPROOF_CONFIG:=/etc/callproof/callproof.toml}"
export CALLPROOF_CONFIG
secrets=/etc/callproof/secrets.env
if [ -r "$secrets" ]; then
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
            CALLPROOF_[A-Z0-9_]*=*)
                name=${line%%=*}
                case "$name" in *[!A-Z0-9_]*) continue ;; esac
                eval "already=\${$name+set}"
                [ "$already" = set ] || export "$line"
                ;;
        esac
    done < "$secrets"
fi
exec /opt/callproof/bin/callproof "$@"
