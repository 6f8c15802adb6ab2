#!/bin/sh
# Entry point of the multiad Dataflow image, which plays two roles:
#
#  - Flex Template launcher: Dataflow starts the container with no
#    arguments; the Go template launcher runs $FLEX_TEMPLATE_GO_BINARY with
#    the template's parameters, and that binary submits the job.
#  - Beam Go SDK worker: Dataflow starts the container with the boot
#    loader's flags (--id, --logging_endpoint, --artifact_endpoint,
#    --provision_endpoint, --control_endpoint, --semi_persist_dir) or, on
#    portable runners, --worker_pool; /opt/apache/beam/boot then fetches the
#    staged worker binary and runs it.
#
# The boot loader always gets --provision_endpoint (or --worker_pool); the
# launcher never does. MULTIAD_ROLE=launcher|worker overrides the guess;
# MULTIAD_BOOT and MULTIAD_LAUNCHER override the two programs (for
# scripts/template.sh --check).
set -eu
role=${MULTIAD_ROLE:-}
if [ -z "$role" ]; then
  role=launcher
  for a in "$@"; do
    case "$a" in
      --provision_endpoint*|-provision_endpoint*|--worker_pool*|-worker_pool*) role=worker ;;
    esac
  done
fi
case "$role" in
  worker) exec "${MULTIAD_BOOT:-/opt/apache/beam/boot}" "$@" ;;
  launcher) exec "${MULTIAD_LAUNCHER:-/opt/google/dataflow/go_template_launcher}" "$@" ;;
  *) echo "entrypoint: MULTIAD_ROLE=$role: want launcher or worker" >&2; exit 2 ;;
esac
