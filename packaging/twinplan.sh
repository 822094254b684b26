#!/bin/sh
# TwinPlan command line (installed by the twinplan package).
exec /opt/twinplan/venv/bin/twinplan "$@"
