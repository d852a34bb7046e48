#!/bin/sh
# Container entrypoint: on first start, if NII_ORG is set and the home holds
# no node yet, create one (nii init); then run nii with the arguments given
# (by default 'run --api 0.0.0.0:7947').
#
#   NII_HOME        the home (default /var/lib/nii, the volume)
#   NII_ORG         the org slug this node speaks for, e.g. greenwich
#   NII_ORG_NAME    its display name
#   NII_FEDERATION  the federation (default local)
set -eu
home=${NII_HOME:-/var/lib/nii}
if [ ! -e "$home/config.toml" ] && [ -n "${NII_ORG:-}" ]; then
	if [ -n "${NII_ORG_NAME:-}" ]; then
		nii --home "$home" init --org "$NII_ORG" --name "$NII_ORG_NAME" --federation "${NII_FEDERATION:-local}" --api 0.0.0.0:7947
	else
		nii --home "$home" init --org "$NII_ORG" --federation "${NII_FEDERATION:-local}" --api 0.0.0.0:7947
	fi
fi
exec nii "$@"
