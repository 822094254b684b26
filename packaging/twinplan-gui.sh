#!/bin/sh
# TwinPlan workstation (installed by the twinplan package).
exec /opt/twinplan/venv/bin/twinplan-gui "$@"
